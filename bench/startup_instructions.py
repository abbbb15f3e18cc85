"""Start-up in instructions: a worker's boot to its first /health counted by valgrind, GAD beside the stack floor.

On a machine shared by other sessions, wall and CPU time of a start swing by a third between rounds; the
number of instructions a boot executes does not (valgrind's cachegrind, hash seed fixed: repeat runs agree
to 0.1 %). Each variant runs what a gunicorn gevent worker runs after the fork: gevent's monkey-patching,
gunicorn's gevent worker module, the collector off as gunicorn.conf.py's post_fork leaves it, the app's
import, the collector frozen and back on (post_worker_init), then one ``GET /health`` in-process.
``--chain`` adds, after the stack floor, each module named in turn and prints what each step adds.

    .venv/bin/python -m bench.startup_instructions
    .venv/bin/python -m bench.startup_instructions --chain pydantic.main psycopg2.extras gad.models gad.security wsgi
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys

from bench.harness import ROOT

_WORKER = """
import gc, importlib, os, sys
COLLECTOR_DURING_IMPORT = os.environ.get("GAD_BENCH_COLLECTOR_DURING_IMPORT") == "1"
from gevent import monkey
monkey.patch_all()
import gunicorn.workers.ggevent
if not COLLECTOR_DURING_IMPORT:
    gc.disable()
from bench.floor_app import hello_with_stack as app
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    app = getattr(module, "app", app)
if not COLLECTOR_DURING_IMPORT:
    gc.freeze()
    gc.enable()
assert app.test_client().get("/health").status_code == 200
"""


def instructions(modules: list[str], *, collector_during_import: bool = False) -> int:
    """Instructions a simulated worker boot executes: the stack floor, then ``modules`` imported in order."""
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": "postgresql://gad@127.0.0.1:1/none", "LOG_LEVEL": "WARNING"}
    env |= {"GAD_BENCH_COLLECTOR_DURING_IMPORT": "1" if collector_during_import else "0"}
    env |= {"PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable, "-c", _WORKER, *modules]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if match is None:
        raise RuntimeError(result.stderr[-2000:])
    return int(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chain", nargs="*", default=None, help="modules to add one after another to the stack floor")
    parser.add_argument(
        "--collector-during-import", action="store_true", help="leave the cyclic collector on during the import, as gunicorn.conf.py did before issue 18"
    )
    args = parser.parse_args()
    run = functools.partial(instructions, collector_during_import=args.collector_during_import)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is required (apt-get install valgrind)")
    # Bytecode compiled as the image has it (Dockerfile: compileall), or GAD's boot would include compiling it.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "config.py", "wsgi.py", "gad", "bench"], cwd=ROOT, check=True)
    floor = run([])
    report: dict[str, object] = {"stack_floor_M": round(floor / 1e6)}
    if args.chain is None:
        gad = run(["wsgi"])
        loaded = run(["pydantic.main", "psycopg2.extras"])
        report |= {
            "gad_M": round(gad / 1e6),
            "gad_minus_stack_floor_M": round((gad - floor) / 1e6),
            # hello_with_stack's `import pydantic` does not load pydantic's model machinery (pydantic 2 loads it
            # on first use), and SQLAlchemy imports psycopg2 only when an engine is made: any app that defines
            # a model or an engine on this stack pays both.
            "stack_floor_with_pydantic_models_and_psycopg2_M": round(loaded / 1e6),
            "gad_minus_that_M": round((gad - loaded) / 1e6),
        }
    else:
        steps, previous, chain = {}, floor, []
        for name in args.chain:
            chain.append(name)
            total = run(chain)
            steps[name] = round((total - previous) / 1e6)
            previous = total
        report |= {"adds_M": steps, "total_M": round(previous / 1e6)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
