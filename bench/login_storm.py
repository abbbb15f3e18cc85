"""Login storm vs liveness: /health p99 on one gevent worker, idle and while 20 logins run concurrently.

Target (issue 3): with 20 concurrent logins, /health p99 stays within 2x its idle p99 — argon2 runs in
gevent's thread pool, so the hub keeps serving other requests.

    .venv/bin/python -m bench.login_storm            # spawns its own server (embedded PostgreSQL)
    .venv/bin/python -m bench.login_storm --url http://127.0.0.1:8080
"""

from __future__ import annotations

import statistics
import threading
import time

from bench.harness import DEMO_ADMIN, Call, run_cli, run_load


def health_request(index: int, seq: int) -> tuple[str, str, None]:
    return "GET", "/health", None


def login_request(index: int, seq: int) -> tuple[str, str, dict[str, str]]:
    return "POST", "/api/v1/auth/login", {"email": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}


def _storm(url: str, logins: Call, duration: float, into: dict[str, object]) -> None:
    into.update(run_load(url, logins, 20, duration, 2))


def measure(url: str, runs: int, duration: float) -> dict[str, object]:
    health = Call(health_request, {})
    logins = Call(login_request, {})
    idle, loaded, login_rates = [], [], []
    for _ in range(runs):
        idle.append(run_load(url, health, concurrency=1, duration=duration, processes=1)["p99_ms"])
        storm_result: dict[str, object] = {}
        # The storm starts first and outlasts the probe, so every probe request meets 20 logins in flight.
        storm = threading.Thread(target=_storm, args=(url, logins, duration + 2, storm_result))
        storm.start()
        time.sleep(0.5)
        loaded.append(run_load(url, health, concurrency=1, duration=duration, processes=1)["p99_ms"])
        storm.join()
        login_rates.append(storm_result["rps"])
    idle_p99 = statistics.median(idle)
    loaded_p99 = statistics.median(loaded)
    return {
        "health_p99_idle_ms": idle_p99,
        "health_p99_during_20_logins_ms": loaded_p99,
        "ratio": round(loaded_p99 / idle_p99, 2),
        "target_ratio": 2.0,
        "logins_per_s": statistics.median(login_rates),
        "runs": runs,
    }


if __name__ == "__main__":
    run_cli(__doc__, measure)
