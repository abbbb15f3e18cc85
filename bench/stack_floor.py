"""The floor of the user's fixed stack on this machine, measured the way bench.api_bench and bench.startup
measure GAD: the same gunicorn.conf.py (gevent worker, cooperative psycopg2), one worker, wrk as the client.

It answers "how close is GAD to what the stack allows?" for targets such as 2,000 req/s per worker or
500 ms from process start to the first /health: bare Flask, one pooled read, one pooled write
(``INSERT … RETURNING`` + COMMIT, the floor of a create), start-up and idle websockets.

    .venv/bin/python -m bench.stack_floor --runs 3 --duration 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.harness import ROOT, median_of, run_wrk, spawned_server
from gad.embedded import free_port

# A create as bench.compare sends it: %s is a prefix per run, %%08d wrk's per-request sequence number.
WRITE_BODY = '{"codigo": "F%s%%08d", "titulo": "Tarea del suelo de escritura", "tipo": "patrullaje", "prioridad": 2}'


def _start(app_spec: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [gunicorn, "-c", "gunicorn.conf.py", app_spec], cwd=ROOT, env=env | {"PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return proc, url, time.perf_counter() - started
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{app_spec} did not start") from None
            time.sleep(0.005)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def measure(runs: int, duration: float) -> dict[str, Any]:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": os.environ["GAD_BENCH_DB_URL"], "WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING"}
    results: dict[str, Any] = {}
    for variant in ("hello", "hello_with_stack"):
        times = []
        for _ in range(runs + 2):
            proc, _url, elapsed = _start(f"bench.floor_app:{variant}", env)
            _stop(proc)
            times.append(elapsed)
        results[f"start_to_first_health_ms_{variant}"] = round(statistics.median(times) * 1000, 1)
    for variant, method, path, body in (
        ("hello", "GET", "/health", ""),
        ("one_query", "GET", "/api/v1/tasks/1", ""),
        ("write", "POST", "/api/v1/tasks", WRITE_BODY),
    ):
        proc, url, _ = _start(f"bench.floor_app:{variant}", env)
        try:
            for concurrency in (16, 64):
                samples = [
                    run_wrk(url, method, path, "", concurrency, duration, body_template=body and body % os.urandom(3).hex().upper()) for _ in range(runs)
                ]
                results.setdefault(f"throughput_{variant}", {})[str(concurrency)] = median_of(samples)
        finally:
            _stop(proc)
    results["idle_websocket"] = _idle_websocket_memory(env, count=3000)
    return results


def _idle_websocket_memory(env: dict[str, str], count: int) -> dict[str, Any]:
    """Worker RSS per idle flask-sock socket under gunicorn/gevent, measured as bench.ws_bench measures GAD."""
    from bench import ws_bench

    proc, url, _ = _start("bench.floor_app:idle_websocket", env | {"WORKER_CONNECTIONS": str(count + 1000)})
    try:
        os.environ["GAD_BENCH_GUNICORN_PID"] = str(proc.pid)
        pid = ws_bench._worker_pid()
        before = ws_bench._rss_kb(pid)
        clients, _ = ws_bench._spawn_clients(url, "", count, 4, hold_s=count / 180 + 40, expect=0)
        time.sleep(count / 180 + 15)
        after = ws_bench._rss_kb(pid)
        for client in clients:
            client.join()
    finally:
        _stop(proc)
    return {"connections": count, "kb_per_connection": round((after - before) / count, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    args = parser.parse_args()
    from bench.ws_bench import _raise_fd_limit

    _raise_fd_limit()
    with spawned_server(workers=1):  # PostgreSQL with the schema and demo tareas for the one-query app
        print(json.dumps(measure(args.runs, args.duration), indent=2))


if __name__ == "__main__":
    main()
