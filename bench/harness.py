"""Benchmark harness: spawn a real server (embedded PostgreSQL + gunicorn/gevent) and drive load.

Load comes from separate client *processes* (gevent inside each), so the client never shares a GIL or a
hub with the server under test, and each process keeps few enough connections that its own scheduling
delay stays far below the latencies it measures. Figures are medians over repeated runs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO_ADMIN = ("admin@gad.local", "demo-password-2026")


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextmanager
def spawned_server(workers: int = 1, extra_env: dict[str, str] | None = None, cpu: str | None = None, datadir: Path | None = None) -> Iterator[str]:
    """Embedded PostgreSQL + migrations + demo data + ``gunicorn -c gunicorn.conf.py wsgi:app``.

    With ``datadir`` the cluster there is reused and kept (a benchmark that bulk-loads a million rows
    loads them once); it is stopped at the end only if this call started it."""
    tmp = Path(tempfile.mkdtemp(prefix="gad-bench-"))
    already_running = datadir is not None and _running(datadir)
    pg, db_url = demo_database(tmp, extra_env, datadir)
    proc, url = start_server(db_url, workers, tmp / "gunicorn.log", extra_env, cpu)
    os.environ["GAD_BENCH_DB_URL"] = db_url  # for benchmarks that bulk-load rows directly
    os.environ["GAD_BENCH_GUNICORN_PID"] = str(proc.pid)  # for benchmarks that read the worker's memory
    # for benchmarks that charge the database's CPU to the requests that caused it (postmaster.pid's first line)
    os.environ["GAD_BENCH_DB_PID"] = (Path(pg.datadir) / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if datadir is None:
            pg.destroy()
        elif not already_running:
            pg.stop()


def _running(datadir: Path) -> bool:
    from gad.embedded import url_if_running

    return url_if_running(datadir) is not None


def demo_database(tmp: Path, extra_env: dict[str, str] | None = None, datadir: Path | None = None) -> tuple[Any, str]:
    """An embedded PostgreSQL under ``tmp`` (or in ``datadir``, reused), migrated and filled with the demo data: (server, URL)."""
    from gad.embedded import EmbeddedPostgres, free_port, wait_until_accepting

    pg = EmbeddedPostgres(datadir or tmp / "pg", port=free_port())
    db_url = pg.start()
    wait_until_accepting(db_url)
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": db_url, "LOG_LEVEL": "WARNING"} | (extra_env or {})
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([*flask, "gad", "seed-demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    return pg, db_url


def start_server(
    database_url: str, workers: int, log_path: Path, extra_env: dict[str, str] | None = None, cpu: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free port, answering health checks: (process, base URL)."""
    from gad.embedded import free_port

    port = free_port()
    env = os.environ | {
        "GAD_ENV": "development",
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "WARNING",
        "LOGIN_RATE_LIMIT": "100000 per minute",
    }
    env.update(extra_env or {})
    command = [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py", "wsgi:app"]
    if cpu:  # keep the server off the load client's core (taskset)
        command = ["taskset", "-c", cpu, *command]
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    return proc, url


def wait_healthy(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy")


def login(url: str, email: str = DEMO_ADMIN[0], password: str = DEMO_ADMIN[1]) -> str:
    import urllib.request

    body = json.dumps({"email": email, "password": password}).encode()
    request = urllib.request.Request(url + "/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["access_token"])


@dataclass
class Call:
    """One kind of request. ``make`` gets (client index, sequence number) and returns (method, path, body)."""

    make: Callable[[int, int], tuple[str, str, dict[str, Any] | None]]
    headers: dict[str, str]


def _client_process(url: str, call: Call, clients: int, first_index: int, duration: float, start_at: float, out: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    import http.client
    from urllib.parse import urlparse

    import gevent

    parsed = urlparse(url)
    latencies: list[float] = []
    errors: dict[int, int] = {}

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        seq = 0
        while time.time() < start_at:
            gevent.sleep(0.001)
        end = start_at + duration
        while time.time() < end:
            method, path, body = call.make(index, seq)
            seq += 1
            payload = json.dumps(body).encode() if body is not None else None
            headers = dict(call.headers)
            if payload is not None:
                headers["Content-Type"] = "application/json"
            started = time.perf_counter()
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
                status = 0
            latencies.append(time.perf_counter() - started)
            if status >= 400 or status == 0:
                errors[status] = errors.get(status, 0) + 1

    gevent.joinall([gevent.spawn(worker, first_index + i) for i in range(clients)])
    # A file, not a multiprocessing.Queue: the queue's feeder thread does not survive gevent's monkey-patching.
    Path(out).write_text(json.dumps({"latencies": latencies, "errors": errors}))


def run_load(url: str, call: Call, concurrency: int, duration: float = 5.0, processes: int | None = None) -> dict[str, Any]:
    """Closed-loop load: ``concurrency`` connections each sending back-to-back requests for ``duration`` s."""
    processes = processes or min(concurrency, 4)
    ctx = mp.get_context("spawn")
    outdir = Path(tempfile.mkdtemp(prefix="gad-load-"))
    start_at = time.time() + 1.5
    per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    procs = []
    first = 0
    for number, count in enumerate(per):
        out = str(outdir / f"{number}.json")
        proc = ctx.Process(target=_client_process, args=(url, call, count, first, duration, start_at, out))
        proc.start()
        procs.append(proc)
        first += count
    latencies: list[float] = []
    errors: dict[int, int] = {}
    for proc in procs:
        proc.join()
    for result_file in outdir.glob("*.json"):
        result = json.loads(result_file.read_text())
        latencies.extend(result["latencies"])
        for status, n in result["errors"].items():
            errors[int(status)] = errors.get(int(status), 0) + n
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "rps": round(len(latencies) / duration, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "errors": errors,
    }


WRK_SCRIPT = """
local counter = 0
local method, path, template = os.getenv("WRK_METHOD"), os.getenv("WRK_PATH"), os.getenv("WRK_BODY")
local authorization = os.getenv("WRK_AUTH")
if authorization ~= "" then wrk.headers["Authorization"] = authorization end
if template ~= "" then wrk.headers["Content-Type"] = "application/json" end
request = function()
  counter = counter + 1
  -- %d in the body template becomes a per-request sequence number (unique codigos for creates).
  local body = nil
  if template ~= "" then body = string.format(template, counter) end
  return wrk.format(method, path, nil, body)
end
"""


def wrk_available() -> bool:
    import shutil

    return shutil.which("wrk") is not None


def run_wrk(
    url: str, method: str, path: str, authorization: str, concurrency: int, duration: float = 5.0, body_template: str = "", cpu: str | None = None
) -> dict[str, Any]:
    """Closed-loop load from wrk (C, one thread): it needs a fraction of the CPU a Python client needs, so on a
    machine where client and server share cores the server keeps more of them. Requests must be the same for
    every connection, apart from a sequence number in the body."""
    import re

    script = Path(tempfile.mkdtemp(prefix="gad-wrk-")) / "load.lua"
    script.write_text(WRK_SCRIPT)
    env = os.environ | {"WRK_METHOD": method, "WRK_PATH": path, "WRK_BODY": body_template, "WRK_AUTH": authorization}
    pin = ["taskset", "-c", cpu] if cpu else []
    out = subprocess.run(
        [*pin, "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "30s", "-s", str(script), url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    units = {"us": 1e-3, "ms": 1.0, "s": 1000.0}

    def latency_ms(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return round(float(match.group(1)) * units[match.group(2)], 2) if match else float("nan")

    requests_match = re.search(r"(\d+) requests in", out)
    errors: dict[int, int] = {}
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors[400] = int(non_2xx.group(1))  # wrk does not say which; the Python client does
    if socket_errors := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors[0] = sum(int(n) for n in socket_errors.groups())
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {
        "concurrency": concurrency,
        "requests": int(requests_match.group(1)) if requests_match else 0,
        "rps": round(float(rps.group(1)), 1) if rps else 0.0,
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "errors": errors,
        "client": "wrk",
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rps", "p50_ms", "p99_ms")
    merged = dict(runs[0])
    for key in keys:
        merged[key] = round(statistics.median(run[key] for run in runs), 2)
    merged["runs"] = len(runs)
    merged["errors"] = {k: sum(run["errors"].get(k, 0) for run in runs) for run in runs for k in run["errors"]}
    return merged


def run_cli(description: str | None, measure: Callable[[str, int, float], Any]) -> None:
    """The common command line: --url to target a running server, else spawn one worker; print JSON."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", help="benchmark this server instead of spawning one")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    if args.url:
        print(json.dumps(measure(args.url, args.runs, args.duration), indent=2))
    else:
        with spawned_server(workers=1) as url:
            print(json.dumps(measure(url, args.runs, args.duration), indent=2))
