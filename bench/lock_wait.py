"""Where concurrent creates wait: PostgreSQL's own view of GAD's backends during a create load (issue 18 item 3).

    .venv/bin/python -m bench.lock_wait --clients 16 --duration 8 --server-cpu 0 --client-cpu 1

Spawns GAD (one gevent worker) on an embedded PostgreSQL, drives ``POST /api/v1/tasks`` with wrk, and samples
``pg_stat_activity`` every ``--every-ms`` while it runs. Each sample classifies the server's client backends:
running a statement, waiting for a lock (and on what: the counter row's ``tuple``/``transactionid``), idle
inside a transaction (a holder waiting for its worker to send the next statement or the COMMIT), or idle. The
averages say where the 16 requests spend their time inside PostgreSQL, and so whether the worker or the
event counter's row bounds the create rate: gapless commit-ordered event ids (docs/ARCHITECTURE.md) make
every writer hold the counter row from its append to its COMMIT.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any

import psycopg2

from bench.harness import DEMO_ADMIN, run_wrk, spawned_server, wrk_available

CREATE = '{"codigo": "LW%08d", "titulo": "Tarea de espera", "tipo": "patrullaje", "prioridad": 2}'

_SAMPLE = """
SELECT state, coalesce(wait_event_type, ''), coalesce(wait_event, '')
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()
"""


def _token(url: str) -> str:
    form = urllib.parse.urlencode({"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}).encode()
    request = urllib.request.Request(url + "/api/v1/auth/login", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return str(json.loads(answer.read())["access_token"])


def _classify(state: str, wait_type: str, wait_event: str) -> str:
    if state == "active":
        if wait_type == "Lock":
            return f"waiting on a lock ({wait_event})"
        return "running a statement" if not wait_type else f"active, waiting on {wait_type}/{wait_event}"
    if state == "idle in transaction":
        return "idle in transaction (its worker has not sent the next statement yet)"
    return state or "unknown"


def sample(database_url: str, stop: threading.Event, every_s: float) -> tuple[int, Counter[str]]:
    """Samples taken, and the sum over samples of backends in each class."""
    totals: Counter[str] = Counter()
    taken = 0
    with psycopg2.connect(database_url) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(_SAMPLE)
                for state, wait_type, wait_event in cur.fetchall():
                    totals[_classify(state, wait_type, wait_event)] += 1
                taken += 1
                time.sleep(every_s)
    return taken, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--every-ms", type=float, default=10.0)
    parser.add_argument("--server-cpu", help="taskset CPU list for the server, e.g. 0")
    parser.add_argument("--client-cpu", help="taskset CPU list for wrk, e.g. 1")
    args = parser.parse_args()
    if not wrk_available():
        parser.error("needs wrk (apt-get install wrk): a Python load client would take the server's CPU")
    with spawned_server(workers=1, cpu=args.server_cpu) as url:
        database_url = os.environ["GAD_BENCH_DB_URL"]
        authorization = f"Bearer {_token(url)}"
        run_wrk(url, "POST", "/api/v1/tasks", authorization, args.clients, 2, body_template=CREATE.replace("LW", "LWWARM"), cpu=args.client_cpu)
        stop = threading.Event()
        outcome: dict[str, Any] = {}

        def sampler() -> None:
            outcome["samples"], outcome["totals"] = sample(database_url, stop, args.every_ms / 1000)

        thread = threading.Thread(target=sampler)
        thread.start()
        try:
            load = run_wrk(url, "POST", "/api/v1/tasks", authorization, args.clients, args.duration, body_template=CREATE, cpu=args.client_cpu)
        finally:
            stop.set()
            thread.join()
    samples = outcome["samples"]
    per_sample = {name: round(count / samples, 2) for name, count in outcome["totals"].most_common()}
    print(json.dumps({"load": load, "samples": samples, "backends_per_sample": per_sample}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
