"""Notification latency on one worker: commit of an assignment -> the officer's socket, deadline -> escalation delivered.

    .venv/bin/python -m bench.notify_bench                 # spawns its own server per sweep interval
    .venv/bin/python -m bench.notify_bench --officers 200 --sweep 1 --sweep 0.25

Each officer (a usuario linked to an efectivo) holds a websocket; a supervisor assigns them one by one
over HTTP. "Commit -> socket" is the officer's receive time minus the event's ``timestamp`` (written at
commit, same clock); "request -> socket" is measured from just before the POST. Nobody answers, so every
assignment escalates after ``NOTIF_PLAZOS=asignacion=1``: "deadline -> escalation delivered" is the
supervisor's receive time of the escalation notification minus the original's ``escalar_en``, and
"deadline -> escalation marked" the sweep's ``escalada_en`` minus ``escalar_en`` (server side only).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from datetime import datetime
from typing import Any

import psycopg2
import requests

from bench.harness import login, percentile, spawned_server
from tests.wsclient import WsClient


def _officers(db_url: str, count: int) -> list[tuple[int, int]]:
    """(usuario id, efectivo id) of ``count`` new officers, inserted directly (no argon2 on the hot path)."""
    stamp = int(time.time() * 1000) % 10**8
    out = []
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        for i in range(count):
            cur.execute(
                "INSERT INTO usuarios (uuid, email, dni, nombre, apellido, nivel, password_hash, verificado, activo, intentos_fallidos, token_version,"
                " created_at, updated_at, version) VALUES (gen_random_uuid(), %s, %s, %s, 'Bench', 1, 'x', true, true, 0, 1, now(), now(), 1) RETURNING id",
                (f"bench{stamp}-{i}@gad.local", f"B{stamp}{i:05d}", f"Agente{i}"),
            )
            uid = cur.fetchone()[0]  # type: ignore[index]
            cur.execute(
                "INSERT INTO efectivos (uuid, usuario_id, codigo_interno, nombre, estado_disponibilidad, estado_cambiado_en, activo, created_at, updated_at,"
                " version) VALUES (gen_random_uuid(), %s, %s, %s, 'disponible', now(), true, now(), now(), 1) RETURNING id",
                (uid, f"NB{stamp % 10**5}{i:05d}", f"Agente {i}"),
            )
            out.append((uid, cur.fetchone()[0]))  # type: ignore[index]
    conn.close()
    return out


def _tokens(db_url: str, usuario_ids: list[int]) -> list[str]:
    """Access tokens issued by the service's own code, with the server's (development) signing key."""
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("GAD_ENV", "development")
    from gad import create_app
    from gad.extensions import db
    from gad.models import Usuario
    from gad.services import auth

    app = create_app()
    with app.app_context():
        tokens = [auth.issue_token(db.session.get(Usuario, uid)).access_token for uid in usuario_ids]  # type: ignore[arg-type]
        db.engine.dispose()
    return tokens


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def measure(url: str, db_url: str, officers: int) -> dict[str, Any]:
    people = _officers(db_url, officers)
    tokens = _tokens(db_url, [uid for uid, _ in people])
    admin = {"Authorization": f"Bearer {login(url)}"}
    supervisor = WsClient(url, admin["Authorization"].split()[1])
    supervisor.recv()
    # Read the supervisor's socket all along, stamping each escalation as it arrives.
    escalations: dict[int, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                frame = supervisor.recv(timeout=1)
            except Exception:
                continue
            data = frame.get("data", {})
            if frame.get("event_type") == "notification" and data.get("causa") == "escalacion":
                escalations[data["origen_id"]] = time.time()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sockets = [WsClient(url, token) for token in tokens]
    for sock in sockets:
        sock.recv()
    body = {"codigo": f"NB-{int(time.time()) % 10**6}", "titulo": "Banco de notificaciones", "tipo": "patrullaje"}
    tarea = requests.post(url + "/api/v1/tasks", json=body, headers=admin, timeout=30).json()
    commit_to_socket: list[float] = []
    request_to_socket: list[float] = []
    deadlines: dict[int, float] = {}
    for (_, efectivo_id), sock in zip(people, sockets, strict=True):
        sent = time.time()
        response = requests.post(f"{url}/api/v1/tasks/{tarea['id']}/efectivos", json={"efectivo_ids": [efectivo_id]}, headers=admin, timeout=30)
        assert response.status_code == 200, response.text
        while True:
            frame = sock.recv(timeout=10)
            if frame.get("event_type") == "notification":
                break
        got = time.time()
        commit_to_socket.append((got - _ts(frame["timestamp"])) * 1000)
        request_to_socket.append((got - sent) * 1000)
        deadlines[frame["data"]["id"]] = _ts(frame["data"]["escalar_en"])
        sock.close()
    stop = time.monotonic() + 60
    while not set(deadlines) <= set(escalations) and time.monotonic() < stop:
        time.sleep(0.2)
    done.set()
    watcher.join()
    supervisor.close()
    escalation = [(escalations[nid] - deadline) * 1000 for nid, deadline in deadlines.items() if nid in escalations]

    def summary(values: list[float]) -> dict[str, float]:
        return {"n": len(values), "p50_ms": round(percentile(values, 50), 1), "p99_ms": round(percentile(values, 99), 1), "max_ms": round(max(values), 1)}

    # Server side of the same: when the sweep marked each row, against its deadline (database clock).
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM escalada_en - escalar_en) * 1000 FROM notificaciones WHERE id = ANY(%s) AND escalada_en IS NOT NULL",
            (list(deadlines),),
        )
        marked = [float(row[0]) for row in cur.fetchall()]
    conn.close()
    return {
        "deadline_to_escalation_marked": summary(marked),
        "assignment_commit_to_socket": summary(commit_to_socket),
        "assignment_request_to_socket": summary(request_to_socket),
        "deadline_to_escalation_delivered": summary(escalation),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--officers", type=int, default=100)
    parser.add_argument("--sweep", type=float, action="append", help="NOTIF_SWEEP_INTERVAL_S values to compare (default 1.0)")
    args = parser.parse_args()
    results = {}
    for sweep in args.sweep or [1.0]:
        env = {"NOTIF_PLAZOS": "asignacion=1", "NOTIF_SWEEP_INTERVAL_S": str(sweep)}
        with spawned_server(workers=1, extra_env=env) as url:
            results[f"sweep_{sweep}s"] = measure(url, os.environ["GAD_BENCH_DB_URL"], args.officers)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
