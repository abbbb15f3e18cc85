"""Start-up time and idle memory of one gunicorn gevent worker, next to the stack's own floor in the same run.

Targets: process start -> first 200 on /health within 100 ms of ``bench.stack_floor``'s floor measured in
the same run (issue 18: ``hello_with_stack``, bare Flask after importing the fixed stack, under the same
gunicorn.conf.py); idle RSS per worker <= 80 MB (issue 8). Rounds interleave GAD and the floors so a
machine that slows down mid-run slows all of them alike. Each GAD round also times the worker's first login
and first authenticated request, which pay for whatever start-up leaves to first use.

    .venv/bin/python -m bench.startup --runs 5
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

from bench.harness import DEMO_ADMIN, ROOT, spawned_server
from bench.stack_floor import _start, _stop


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _timed(request: urllib.request.Request) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return (time.perf_counter() - started) * 1000, body


def first_requests(url: str) -> tuple[float, float]:
    """Latency (ms) of a fresh worker's first login and first authenticated request (``/api/v1/users/me``):
    what start-up work deferred to first use would cost a user."""
    email, password = DEMO_ADMIN
    login = urllib.request.Request(
        url + "/api/v1/auth/login", data=json.dumps({"email": email, "password": password}).encode(), headers={"Content-Type": "application/json"}
    )
    login_ms, body = _timed(login)
    token = json.loads(body)["access_token"]
    me_ms, _ = _timed(urllib.request.Request(url + "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}))
    return login_ms, me_ms


def one_start(app_spec: str, env: dict[str, str], *, gad: bool = False) -> tuple[float, float, float, tuple[float, float]]:
    """Wall time to the first 200 on /health, the CPU time master and worker had spent by then (what a
    shared machine disturbs least: other sessions' work delays a start, it does not add to its CPU time),
    and for GAD the worker's idle RSS and the latency of its first login and first authenticated request."""
    proc, url, elapsed = _start(app_spec, env)
    try:
        worker = int(subprocess.check_output(["pgrep", "-P", str(proc.pid)]).split()[0])
        cpu = _cpu_ms(proc.pid) + _cpu_ms(worker)
        if not gad:
            return elapsed, cpu, 0.0, (0.0, 0.0)
        time.sleep(2)  # idle
        rss = _rss_mb(worker)
        return elapsed, cpu, rss, first_requests(url)
    finally:
        _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    # As the image does (Dockerfile: compileall): with PYTHONDONTWRITEBYTECODE set, as in the image and on
    # these machines, every start would otherwise compile all of gad/ and the floor would not.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "config.py", "wsgi.py", "gunicorn.conf.py", "gad", "bench"], cwd=ROOT, check=True)
    with spawned_server(workers=1):
        env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": os.environ["GAD_BENCH_DB_URL"], "WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING"}
        variants = {"gad": "wsgi:app", "floor_hello": "bench.floor_app:hello", "floor_hello_with_stack": "bench.floor_app:hello_with_stack"}
        for spec in variants.values():  # one warm-up start each: page cache and bytecode, not measured
            one_start(spec, env)
        starts: dict[str, list[float]] = {name: [] for name in variants}
        cpus: dict[str, list[float]] = {name: [] for name in variants}
        rss: list[float] = []
        firsts: list[tuple[float, float]] = []
        load_before = os.getloadavg()
        for _ in range(args.runs):
            for name, spec in variants.items():
                elapsed, cpu, worker_rss, first = one_start(spec, env, gad=name == "gad")
                starts[name].append(elapsed * 1000)
                cpus[name].append(cpu)
                if name == "gad":
                    rss.append(worker_rss)
                    firsts.append(first)
    medians = {name: round(statistics.median(values), 1) for name, values in starts.items()}
    gaps = [g - f for g, f in zip(starts["gad"], starts["floor_hello_with_stack"], strict=True)]
    cpu_gaps = [g - f for g, f in zip(cpus["gad"], cpus["floor_hello_with_stack"], strict=True)]
    print(
        json.dumps(
            {
                "start_to_first_health_ms_median": medians,
                "gad_minus_stack_floor_ms_median_of_rounds": round(statistics.median(gaps), 1),
                "per_round_ms": {name: [round(v) for v in values] for name, values in starts.items()},
                "cpu_ms_at_first_health_median": {name: round(statistics.median(values), 1) for name, values in cpus.items()},
                "gad_minus_stack_floor_cpu_ms_median_of_rounds": round(statistics.median(cpu_gaps), 1),
                "cpu_ms_per_round": {name: [round(v) for v in values] for name, values in cpus.items()},
                "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
                "idle_worker_rss_mb_median": round(statistics.median(rss), 1),
                "gad_first_login_ms": {"median": round(statistics.median(f[0] for f in firsts), 1), "per_round": [round(f[0]) for f in firsts]},
                "gad_first_users_me_ms": {"median": round(statistics.median(f[1] for f in firsts), 1), "per_round": [round(f[1]) for f in firsts]},
                "targets": {"gad_minus_stack_floor_ms": 100, "rss_mb": 80},
                "runs": args.runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
