"""Worker instructions per cycle of the writes that lock a tarea — assign an efectivo, start the tarea, release
the efectivo — counted by valgrind as ``bench.request_instructions`` counts one request, optionally beside
another checkout of GAD (``--against``: a git worktree of the commit to compare with), on the same database.

These writes go through the ORM and cost several times a create, and a change to them of a few per cent is lost
in the spread of timed runs on this machine; the instructions do not spread. Each count runs the WSGI app
in-process as a gunicorn gevent worker would, with the caller known to the token cache, against an embedded
PostgreSQL that valgrind does not follow: two processes make ``--cycles`` and ``--cycles + --extra`` cycles on
tareas created beforehand (the same number in both), and the difference is divided by ``--extra``.

    .venv/bin/python -m bench.tarea_writes
    git worktree add --detach /tmp/base <commit> && .venv/bin/python -m bench.tarea_writes --against /tmp/base
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.harness import ROOT, demo_database
from bench.request_instructions import _token_and_tarea

_WORKER = """
import os, sys
from gevent import monkey
monkey.patch_all()
from gad import pg
pg.install_wait_callback()
from wsgi import app
from gad.principal_cache import principals
principals.set_listener_connected(True)  # as in a worker whose event listener is up (no hub runs here)
client = app.test_client()
headers = {"Authorization": "Bearer " + os.environ["GAD_BENCH_TOKEN"]}
cycles, prepared = int(sys.argv[1]), int(sys.argv[2])
tag = f"{os.getpid()}"
efectivo = client.post("/api/v1/efectivos", json={"codigo_interno": f"TW{tag}", "nombre": "Banco de pruebas"}, headers=headers)
assert efectivo.status_code == 201, efectivo.get_json()
efectivo_id = efectivo.get_json()["id"]
tareas = []
for n in range(prepared):
    created = client.post("/api/v1/tasks", json={"codigo": f"TW{tag}-{n}", "titulo": "Banco de pruebas", "tipo": "patrullaje"}, headers=headers)
    assert created.status_code == 201, created.get_json()
    tareas.append(created.get_json()["id"])

def cycle(tarea_id):
    for method, path, body in (
        ("post", f"/api/v1/tasks/{tarea_id}/efectivos", {"efectivo_ids": [efectivo_id]}),
        ("post", f"/api/v1/tasks/{tarea_id}/estado", {"estado": "en_curso"}),
        ("delete", f"/api/v1/tasks/{tarea_id}/efectivos/{efectivo_id}", None),
    ):
        answer = getattr(client, method)(path, json=body, headers=headers)
        assert answer.status_code == 200, (path, answer.get_json())

for tarea_id in tareas[:10]:  # warm-up: statements prepared, first-use work done
    cycle(tarea_id)
for tarea_id in tareas[10 : 10 + cycles]:
    cycle(tarea_id)
"""


def _instructions(root: Path, cycles: int, prepared: int, env: dict[str, str]) -> int:
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable, "-c", _WORKER, str(cycles), str(prepared)]
    result = subprocess.run(command, cwd=root, env=env | {"PYTHONPATH": str(root)}, capture_output=True, text=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or match is None:
        raise RuntimeError(result.stderr[-3000:])
    return int(match.group(1).replace(",", ""))


def per_cycle(root: Path, cycles: int, extra: int, env: dict[str, str]) -> int:
    prepared = 10 + cycles + extra  # both processes create as many tareas: only the cycles differ
    with ThreadPoolExecutor(2) as pool:  # two cores: both counts at once
        fewer, more = pool.map(lambda n: _instructions(root, n, prepared, env), (cycles, cycles + extra))
    return round((more - fewer) / extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", type=Path, help="another checkout of GAD to count beside this one")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--extra", type=int, default=20)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is required (apt-get install valgrind)")
    roots = {"this": ROOT} | ({"against": args.against.resolve()} if args.against else {})
    for root in roots.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", "config.py", "wsgi.py", "gad"], cwd=root, check=True)
    server, url = demo_database(Path(tempfile.mkdtemp(prefix="gad-tarea-writes-")))
    try:
        env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
        env["GAD_BENCH_TOKEN"] = _token_and_tarea(env)[0]
        counts = {name: per_cycle(root, args.cycles, args.extra, env) for name, root in roots.items()}
        for name, count in counts.items():
            print(f"{name} ({roots[name]}): {count / 1e3:,.0f} k instructions per assign + start + release")
        if "against" in counts:
            print(f"this ÷ against: {counts['this'] / counts['against']:.3f}")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
