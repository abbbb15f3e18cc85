"""The service-wide write ceiling (issue 18, item 6): creates against 2 servers x 2 workers, one PostgreSQL.

Gapless, commit-ordered event ids serialise every writer on one counter row (gad/realtime/events.py): a
transaction holds that row's lock from taking its ids to its commit. This script raises the number of
concurrent writers step by step, half on each server, and reports at each step the events/s committed
and the p99 of a create; the ceiling is the highest rate whose p99 stays within 100 ms. It also reads,
from PostgreSQL itself, how long the counter lock is held per transaction (the serial section), which
bounds the ceiling whatever the number of servers: 1 / hold time.

    .venv/bin/python -m bench.write_ceiling --steps 2,4,8,16,32,64 --duration 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import DEMO_ADMIN, demo_database, login, run_wrk, start_server

P99_LIMIT_MS = 100.0


def _creates(url: str, prefix: str, token: str, clients: int, duration: float) -> dict[str, Any]:
    body = '{"codigo": "' + prefix + '%08d", "titulo": "Techo de escritura", "tipo": "patrullaje"}'
    return run_wrk(url, "POST", "/api/v1/tasks", f"Bearer {token}", clients, duration, body_template=body)


def _lock_hold_ms(database_url: str, samples: int = 200) -> dict[str, float]:
    """Time from taking event ids to COMMIT, as PostgreSQL sees it: the section every writer runs alone."""
    import psycopg2

    conn = psycopg2.connect(database_url)
    times = []
    with conn.cursor() as cur:
        for n in range(samples):
            started = time.perf_counter()
            cur.execute("UPDATE eventos_contador SET last_id = last_id WHERE id = 1 RETURNING last_id, last_hash")
            cur.fetchone()
            # The append statement's shape (one row, head update, NOTIFY) without writing a real event.
            cur.execute("SELECT pg_notify('gad_bench', %s)", (str(n),))
            conn.commit()
            times.append((time.perf_counter() - started) * 1000)
    conn.close()
    times.sort()
    return {"p50": round(times[len(times) // 2], 3), "p99": round(times[int(len(times) * 0.99)], 3)}


def measure(steps: list[int], duration: float, servers: int, workers: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gad-ceiling-"))
    pg, database_url = demo_database(tmp)
    running = [start_server(database_url, workers, tmp / f"server-{number}.log") for number in range(servers)]
    try:
        token = login(running[0][1], *DEMO_ADMIN)
        results = []
        for step in steps:
            per_server = max(1, step // servers)
            with ThreadPoolExecutor(len(running)) as pool:
                futures = [pool.submit(_creates, url, f"WC{step:03d}{index}", token, per_server, duration) for index, (_, url) in enumerate(running)]
                outcomes = [future.result() for future in futures]
            results.append(
                {
                    "writers": per_server * len(running),
                    "creates_per_s": round(sum(o["rps"] for o in outcomes), 1),
                    "p99_ms": max(o["p99_ms"] for o in outcomes),
                    "p50_ms": max(o["p50_ms"] for o in outcomes),
                    "errors": sum(sum(o["errors"].values()) for o in outcomes),
                }
            )
        within = [r for r in results if r["p99_ms"] <= P99_LIMIT_MS]
        hold = _lock_hold_ms(database_url)
        return {
            "servers": servers,
            "workers_per_server": workers,
            "steps": results,
            "ceiling_creates_per_s_p99_within_100ms": max((r["creates_per_s"] for r in within), default=0.0),
            # Each create writes one event, so creates/s is events/s.
            "counter_lock_hold_ms": hold,
            "serial_bound_events_per_s": round(1000 / hold["p50"], 0),
        }
    finally:
        for proc, _ in running:
            proc.terminate()
            proc.wait(timeout=30)
        pg.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="2,4,8,16,32,64", help="total concurrent writers at each step")
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure([int(s) for s in args.steps.split(",")], args.duration, args.servers, args.workers), indent=2))


if __name__ == "__main__":
    main()
