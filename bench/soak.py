"""Sustained load: 64 concurrent clients for 60 s on a mixed workload with 200 websocket listeners,
WEB_CONCURRENCY=2. Reports errors, worker memory after warm-up vs at the end, and whether every
committed event reached every listener.

    .venv/bin/python -m bench.soak --duration 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import secrets
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import psycopg2

from bench.api_bench import running_tareas
from bench.harness import Call, login, run_load, spawned_server

TOPICS_OFF = ["seguridad", "usuarios"]


def mixed(ids: list[int], prefix: str, index: int, seq: int) -> tuple[str, str, dict[str, Any] | None]:
    kind = seq % 10
    if kind < 5:
        return "GET", "/api/v1/tasks?limit=50", None
    if kind < 7:
        return "GET", f"/api/v1/tasks/{ids[index]}", None
    if kind < 9:
        return "POST", "/api/v1/tasks", {"codigo": f"{prefix}{index:02d}{seq:06d}", "titulo": "Carga sostenida", "tipo": "patrullaje"}
    # kind == 9 happens at seq 9, 19, 29...: alternate so each call is a legal transition
    return "POST", f"/api/v1/tasks/{ids[index]}/estado", {"estado": "pausada" if (seq // 10) % 2 == 0 else "en_curso"}


def _listeners(url: str, token: str, count: int, seconds: float, out: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import websocket

    received: list[list[int]] = []

    def one() -> None:
        ids: list[int] = []
        received.append(ids)
        ws = websocket.create_connection(url.replace("http", "ws") + f"/ws/connect?token={token}", timeout=60, suppress_origin=True)
        ws.recv()
        ws.send(json.dumps({"event_type": "unsubscribe", "data": {"topics": TOPICS_OFF}}))
        ws.settimeout(1)
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                frame = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if isinstance(frame.get("id"), int):
                ids.append(frame["id"])
        ws.close()

    jobs = []
    for _ in range(count):
        jobs.append(gevent.spawn(one))
        gevent.sleep(0.02)
    gevent.joinall(jobs)
    Path(out).write_text(json.dumps(received))


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def _workers() -> list[int]:
    masters = subprocess.check_output(["pgrep", "-f", "gunicorn -c gunicorn.conf.py wsgi:app"]).split()
    workers: list[int] = []
    for master in masters:
        workers += [int(p) for p in subprocess.run(["pgrep", "-P", master.decode()], capture_output=True, text=True).stdout.split()]
    return workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--listeners", type=int, default=200)
    args = parser.parse_args()
    with spawned_server(workers=2) as url:
        token = login(url)
        headers = {"Authorization": f"Bearer {token}"}
        ids = running_tareas(url, token, args.clients, "SK" + secrets.token_hex(2).upper())
        ctx = mp.get_context("spawn")
        outdir = Path(tempfile.mkdtemp(prefix="gad-soak-"))
        listen_for = args.duration + 25
        procs = [ctx.Process(target=_listeners, args=(url, token, args.listeners // 2, listen_for, str(outdir / f"{i}.json"))) for i in range(2)]
        for proc in procs:
            proc.start()
        time.sleep(args.listeners * 0.02 / 2 + 3)
        conn = psycopg2.connect(os.environ["GAD_BENCH_DB_URL"])
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT last_id FROM eventos_contador")
            first_event = int(cur.fetchone()[0]) + 1  # type: ignore[index]
        workers = _workers()
        memory: dict[str, float] = {}

        def sample_after_warmup() -> None:
            time.sleep(min(10, args.duration / 3))
            memory["after_warmup_mb"] = _rss_mb(workers)

        import threading

        sampler = threading.Thread(target=sample_after_warmup)
        sampler.start()
        result = run_load(url, Call(partial(mixed, ids, "S" + secrets.token_hex(2).upper()), headers), args.clients, args.duration, processes=4)
        sampler.join()
        memory["at_end_mb"] = _rss_mb(workers)
        with conn.cursor() as cur:
            cur.execute("SELECT last_id FROM eventos_contador")
            last_event = int(cur.fetchone()[0])  # type: ignore[index]
            cur.execute("SELECT id FROM eventos WHERE id BETWEEN %s AND %s AND topic NOT IN ('seguridad', 'usuarios')", (first_event, last_event))
            expected = {row[0] for row in cur.fetchall()}
        for proc in procs:
            proc.join()
        listeners = [set(ids_) for f in outdir.glob("*.json") for ids_ in json.loads(f.read_text())]
        complete = sum(1 for got in listeners if expected <= got)
        print(
            json.dumps(
                {
                    "load": result,
                    "memory": memory | {"growth_mb": round(memory["at_end_mb"] - memory["after_warmup_mb"], 1)},
                    "events_committed": len(expected),
                    "listeners": len(listeners),
                    "listeners_with_every_event": complete,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
