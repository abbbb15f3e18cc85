"""Start-up time and idle memory of one gunicorn gevent worker.

Targets (issue 8): process start -> first 200 on /health <= 500 ms with one worker; idle RSS per worker <= 80 MB.

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

from bench.harness import ROOT, spawned_server
from gad.embedded import free_port


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_start(db_url: str) -> tuple[float, float]:
    port = free_port()
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": db_url, "PORT": str(port), "WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING"}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    started = time.perf_counter()
    proc = subprocess.Popen([gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.005)
        elapsed = time.perf_counter() - started
        time.sleep(2)  # idle
        worker = int(subprocess.check_output(["pgrep", "-P", str(proc.pid)]).split()[0])
        return elapsed, _rss_mb(worker)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with spawned_server(workers=1):
        db_url = os.environ["GAD_BENCH_DB_URL"]
        results = [one_start(db_url) for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "start_to_first_health_ms_median": round(statistics.median(r[0] for r in results) * 1000, 1),
                "idle_worker_rss_mb_median": round(statistics.median(r[1] for r in results), 1),
                "targets": {"start_ms": 500, "rss_mb": 80},
                "runs": args.runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
