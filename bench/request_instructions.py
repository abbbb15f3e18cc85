"""Per-request cost in instructions: GAD beside the stack's floor for each scenario of ``bench.compare``, counted by valgrind.

On this shared 2-core machine req/s and CPU time per request swing by a fifth from run to run, so a change
of a few per cent cannot be seen in them; the instructions a request executes do not swing (valgrind's
cachegrind, hash seed fixed). Each count runs the WSGI app in-process as a gunicorn gevent worker would
(gevent patched, psycopg2's wait callback), against an embedded PostgreSQL that valgrind does not follow:
it makes a warm-up, then ``--requests`` more (and, in a second process, ``--requests`` + ``--extra``), and
divides the difference by ``--extra``, so start-up and warm-up cancel out. What it leaves out is the same
on both sides: gunicorn's own parsing and writing of each request, and PostgreSQL's work. A create is counted beside both
of its floors: the bare INSERT and the one that does the work of GAD's guarantees (``bench.floor_app``).

    .venv/bin/python -m bench.request_instructions
    .venv/bin/python -m bench.request_instructions --scenario create --scenario get_one
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.compare import FLOOR_SCENARIOS, SCENARIOS
from bench.harness import DEMO_ADMIN, ROOT, demo_database

_WORKER = """
import io, itertools, json, os, sys
from gevent import monkey
monkey.patch_all()
from gad import pg
pg.install_wait_callback()
from bench.compare import SCENARIOS
system, scenario, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
if system == "gad":
    from wsgi import app
    from gad.principal_cache import principals
    principals.set_listener_connected(True)  # as in a worker whose event listener is up (no hub runs here)
else:
    import bench.floor_app
    app = getattr(bench.floor_app, system.removeprefix("floor_"))
client = app.test_client()
token = os.environ["GAD_BENCH_TOKEN"]
method, path, body = SCENARIOS[scenario]
path = path.format(tarea=os.environ["GAD_BENCH_TAREA"])
numbers = itertools.count()
answers = []

def start_response(status, headers, exc_info=None):
    answers.append(status)

def one():
    data = body.format(prefix=f"I{os.getpid()}-", extra="").replace("%08d", str(next(numbers))).encode() if body else b""
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path.partition("?")[0], "QUERY_STRING": path.partition("?")[2],
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8080", "HTTP_USER_AGENT": "wrk", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data),
        "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if scenario != "health":
        environ["HTTP_AUTHORIZATION"] = "Bearer " + token
    if data:
        environ |= {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(data))}
    b"".join(app(environ, start_response))

for _ in range(20 + count):
    one()
assert {status[:3] for status in answers} <= {"200", "201"}, set(answers)
"""


def _instructions(system: str, scenario: str, count: int, env: dict[str, str]) -> int:
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    result = subprocess.run([*command, sys.executable, "-c", _WORKER, system, scenario, str(count)], cwd=ROOT, env=env, capture_output=True, text=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or match is None:
        raise RuntimeError(result.stderr[-3000:])
    return int(match.group(1).replace(",", ""))


def per_request(system: str, scenario: str, requests: int, extra: int, env: dict[str, str]) -> int:
    """Instructions of one request: two processes, ``requests`` and ``requests + extra`` after the warm-up."""
    with ThreadPoolExecutor(2) as pool:  # two cores: both counts at once
        fewer, more = pool.map(lambda n: _instructions(system, scenario, n, env), (requests, requests + extra))
    return round((more - fewer) / extra)


def _token_and_tarea(env: dict[str, str]) -> tuple[str, str]:
    """Log in as the demo admin and name a tarea, in a process of its own (the measured ones only use them)."""
    probe = (
        "import json; from wsgi import app; c = app.test_client(); "
        f"t = c.post('/api/v1/auth/login', json={{'email': {DEMO_ADMIN[0]!r}, 'password': {DEMO_ADMIN[1]!r}}}).get_json()['access_token']; "
        "i = c.get('/api/v1/tasks?limit=1', headers={'Authorization': 'Bearer ' + t}).get_json()['items'][0]['id']; "
        "print(json.dumps([t, i]))"
    )
    token, tarea = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
    return token, str(tarea)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="scenarios to count (default: all)")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--extra", type=int, default=200)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is required (apt-get install valgrind)")
    subprocess.run([sys.executable, "-m", "compileall", "-q", "config.py", "wsgi.py", "gad", "bench"], cwd=ROOT, check=True)
    server, url = demo_database(Path(tempfile.mkdtemp(prefix="gad-instr-")))
    try:
        env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
        env |= dict(zip(("GAD_BENCH_TOKEN", "GAD_BENCH_TAREA"), _token_and_tarea(env), strict=True))
        report: dict[str, dict[str, float]] = {}
        for scenario in args.scenario or list(SCENARIOS):
            gad = per_request("gad", scenario, args.requests, args.extra, env)
            report[scenario] = {"gad_k": round(gad / 1e3)}
            # Every floor of the scenario (a create has two: the bare INSERT and the one with GAD's guarantees).
            for floor in (name for name, covered in FLOOR_SCENARIOS.items() if scenario in covered):
                floor_count = per_request(floor, scenario, args.requests, args.extra, env)
                report[scenario] |= {f"{floor}_k": round(floor_count / 1e3), f"{floor}_div_gad": round(floor_count / gad, 2)}
            print(scenario, report[scenario], flush=True)
        print(json.dumps(report, indent=2))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
