"""Notifications over the real stack: two gunicorn servers, real websockets, PostgreSQL deciding who escalates.

This module has a database of its own, so that the only processes sweeping its deadlines are the
servers it starts (the suite's other servers sweep the shared test database).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from flask import Flask

from gad.extensions import db
from gad.models import Efectivo, Tarea, Usuario
from tests.builders import Builders, _password_hash
from tests.conftest import LiveServer, clean_database, disposed_after, make_app, migrated_database, start_gunicorn, stop_gunicorn
from tests.wsclient import WsClient

FAST = {"NOTIF_PLAZOS": "asignacion=2,emergencia=2", "NOTIF_SWEEP_INTERVAL_S": "0.2", "WS_QUEUE_SIZE": "5000"}


@pytest.fixture(scope="module")
def own_db(pg_server: str) -> str:
    return migrated_database(pg_server, "gad_test_notificaciones")


def _own_make_app(own_db: str, **overrides: Any) -> Flask:
    """make_app points TEST_DATABASE_URL at its database; put the run's back, or later modules would use ours."""
    before = os.environ.get("TEST_DATABASE_URL")
    try:
        return make_app(own_db, **overrides)
    finally:
        if before is None:
            os.environ.pop("TEST_DATABASE_URL", None)
        else:
            os.environ["TEST_DATABASE_URL"] = before


@pytest.fixture(scope="module")
def own_app(own_db: str) -> Iterator[Flask]:
    yield from disposed_after(_own_make_app(own_db))


@pytest.fixture
def fresh(own_db: str, own_app: Flask) -> Builders:
    clean_database(own_db)
    return Builders(own_app)


@pytest.fixture(scope="module")
def two_servers(own_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    tmp = tmp_path_factory.mktemp("notif")
    a = start_gunicorn(own_db, workers=1, tmp=tmp, extra_env=FAST)
    b = start_gunicorn(own_db, workers=1, tmp=tmp, extra_env=FAST)
    yield a, b
    stop_gunicorn(a)
    stop_gunicorn(b)


def _query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def _officers(app: Flask, n: int, *, unidad: str = "Móvil 1") -> list[Usuario]:
    """``n`` nivel-1 usuarios, each linked to an efectivo, written in one transaction."""
    stamp = time.monotonic_ns()
    with app.app_context():
        usuarios = [
            Usuario(
                email=f"o{stamp}-{i}@gad.test", dni=f"{stamp % 10**9}{i:05d}", nombre=f"Agente{i}", apellido="Prueba", nivel=1, password_hash=_password_hash()
            )
            for i in range(n)
        ]
        db.session.add_all(usuarios)
        db.session.flush()
        db.session.add_all(
            Efectivo(codigo_interno=f"E{stamp % 10**8}{i:05d}", nombre=f"Agente {i}", unidad=unidad, usuario_id=u.id) for i, u in enumerate(usuarios)
        )
        db.session.commit()
        for u in usuarios:
            db.session.expunge(u)
    return usuarios


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _next_of(client: WsClient, event_type: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = client.recv(timeout=max(deadline - time.monotonic(), 0.1))
        if frame.get("event_type") == event_type:
            return frame


# --- single servers first: while they run, no other server of this module sweeps its database -------


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def test_server_killed_mid_sweep_every_due_escalation_still_fires_once(own_db: str, fresh: Builders, tmp_path: Path) -> None:
    # A deadline long enough to take the counter below before any of them is due.
    a = start_gunicorn(own_db, workers=1, tmp=tmp_path, extra_env=FAST | {"NOTIF_PLAZOS": "asignacion=8"})
    b: LiveServer | None = None
    try:
        sup = fresh.usuario(2)
        officers = _officers(fresh.app, 40)
        _assign_many((a,), fresh, sup, officers, per_tarea=40)
        # Hold the event counter: A's sweep takes every due row (FOR UPDATE SKIP LOCKED), writes its
        # escalations, and then waits at commit for the counter — in the middle of its transaction.
        holder = psycopg2.connect(own_db)
        with holder.cursor() as cur:
            cur.execute("SELECT last_id FROM eventos_contador WHERE id = 1 FOR UPDATE")

        def a_holds_every_due_row() -> bool:
            waiting = _query(own_db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gad' AND wait_event_type = 'Lock'")[0][0]
            free = _query(
                own_db, "SELECT count(*) FROM (SELECT id FROM notificaciones WHERE escalar_en IS NOT NULL AND escalada_en IS NULL FOR UPDATE SKIP LOCKED) f"
            )[0][0]
            return waiting >= 1 and free == 0

        _wait(a_holds_every_due_row, 30, "server A mid-sweep")
        for pid in [*_children(a.process.pid), a.process.pid]:
            os.kill(pid, signal.SIGKILL)
        a.process.wait()
        holder.rollback()
        holder.close()
        # Nothing of A's transaction survived; B starts later (deadlines kept running meanwhile) and fires all.
        assert _escalation_counts(own_db) == (0, 0, 0, 0)
        b = start_gunicorn(own_db, workers=1, tmp=tmp_path, extra_env=FAST)
        _wait(lambda: _escalation_counts(own_db)[0] == 40, 30, "40 escalations by B")
        time.sleep(1.0)
        assert _escalation_counts(own_db) == (40, 40, 40, 40)
    finally:
        if a.process.poll() is None:
            stop_gunicorn(a)
        elif a.log_file is not None:
            a.log_file.close()
        if b is not None:
            stop_gunicorn(b)


def test_deadlines_that_pass_while_no_server_runs_fire_at_the_next_start(own_db: str, fresh: Builders, tmp_path: Path) -> None:
    # Written by the service in-process (no sweeper runs here), with a deadline already in the past.
    sup = fresh.usuario(2)
    [officer] = _officers(fresh.app, 1)
    app = _own_make_app(own_db, NOTIF_PLAZOS={"asignacion": 1})
    client = app.test_client()
    tarea = fresh.tarea(sup)
    with app.app_context():
        efectivo_id = db.session.scalar(db.select(Efectivo.id).where(Efectivo.usuario_id == officer.id))
    assert client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [efectivo_id]}, headers=fresh.headers(sup)).status_code == 200
    time.sleep(1.2)
    assert _escalation_counts(own_db) == (0, 0, 0, 0)
    server = start_gunicorn(own_db, workers=1, tmp=tmp_path, extra_env=FAST)
    try:
        _wait(lambda: _escalation_counts(own_db)[0] == 1, 20, "the overdue escalation")
        (escalar_en, escalada_en) = _query(own_db, "SELECT escalar_en, escalada_en FROM notificaciones WHERE causa = 'asignacion'")[0]
        assert escalada_en > escalar_en
        assert _query(own_db, "SELECT count(*) FROM tareas WHERE id = %s", (tarea.id,))[0][0] == 1
    finally:
        stop_gunicorn(server)


# --- 200 recipients of one alert, across both servers ----------------------------------------------


def test_alert_to_200_recipients_on_two_servers_gives_an_exact_tally(own_db: str, fresh: Builders, two_servers: tuple[LiveServer, LiveServer]) -> None:
    opened: list[WsClient] = []  # closed at the end whatever happens: a socket left to the collector fails a later test

    def open_socket(*args: Any, **kwargs: Any) -> WsClient:
        client = WsClient(*args, **kwargs)
        opened.append(client)
        return client

    try:
        _alert_to_200_recipients(own_db, fresh, two_servers, open_socket)
    finally:
        for client in opened:
            client.close()


def _alert_to_200_recipients(own_db: str, fresh: Builders, servers: tuple[LiveServer, LiveServer], open_socket: Callable[..., WsClient]) -> None:
    sup = fresh.usuario(2)
    officers = _officers(fresh.app, 200, unidad="Móvil 200")
    tokens = [fresh.token(o) for o in officers]
    operator = open_socket(servers[1].url, fresh.token(sup))
    operator.recv()
    # Two recipients are offline when the alert goes out; they remember where their stream stood.
    offline = {0, 1}
    sockets: dict[int, WsClient] = {}
    last_seen: dict[int, int] = {}
    for i, token in enumerate(tokens):
        client = open_socket(servers[i % 2].url, token)
        ack = client.recv()
        if i in offline:
            last_seen[i] = ack["data"]["last_event_id"]
            client.close()
        else:
            sockets[i] = client

    created = servers[0].post(
        "/api/v1/alertas", json={"tipo": "codigo_rojo", "texto": "Código rojo en Sol", "destino": "unidad", "unidad": "Móvil 200"}, headers=fresh.headers(sup)
    )
    assert created.status_code == 201, created.text
    alerta = created.json()
    assert alerta["total"] == 200 and alerta["pendientes"] == 200

    def answer(i: int) -> int:
        if i in offline:  # back online: resume from where the stream stood
            client = open_socket(servers[(i + 1) % 2].url, tokens[i], since=last_seen[i])
            assert client.recv()["event_type"] == "connection_ack"  # first, before anything live or replayed
        else:
            client = sockets[i]
        frame = _next_of(client, "notification")
        data = frame["data"]
        assert data["usuario_id"] == officers[i].id and data["alerta_id"] == alerta["id"] and data["causa"] == "alerta"
        client.send("notification_received", ids=[data["id"]])
        headers = {"Authorization": f"Bearer {tokens[i]}"}
        # Every recipient answers once; every tenth repeats it on the other server (idempotent).
        status = servers[i % 2].post(f"/api/v1/notificaciones/{data['id']}/ack", json={"respuesta": "acepto"}, headers=headers).status_code
        if i % 10 == 0:
            assert servers[(i + 1) % 2].post(f"/api/v1/notificaciones/{data['id']}/ack", json={"respuesta": "acepto"}, headers=headers).status_code == 200
        # Nobody else's notification frames reached this socket.
        assert all(f.get("event_type") != "notification" for f in client.quiet(0.05))
        client.close()
        return status

    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(answer, range(200)))
    assert Counter(statuses) == {200: 200}

    tally = servers[1].get(f"/api/v1/alertas/{alerta['id']}", headers=fresh.headers(sup)).json()
    assert (tally["total"], tally["confirmados"], tally["no_pueden"], tally["pendientes"], tally["faltan"]) == (200, 200, 0, 0, [])
    # The operator's live tally ends exactly at 200 / 200, having counted up one by one.
    counts: list[int] = []
    while not counts or counts[-1] < 200:
        frame = _next_of(operator, "alert_tally")
        counts.append(frame["data"]["confirmados"])
    assert counts == list(range(1, 201))
    operator.close()
    answered = _query(own_db, "SELECT count(*), count(DISTINCT entity_id) FROM eventos WHERE event_type = 'notification_answered'")[0]
    assert answered == (200, 200)
    # Delivery was reported (by the socket, or by the answer itself) for every one.
    assert _query(own_db, "SELECT count(*) FROM notificaciones WHERE alerta_id = %s AND entregada_en IS NOT NULL", (alerta["id"],))[0][0] == 200


# --- escalation exactly once -----------------------------------------------------------------------


def _assign_many(servers: tuple[LiveServer, ...], builders: Builders, sup: Usuario, officers: list[Usuario], per_tarea: int = 10) -> list[int]:
    with builders.app.app_context():
        efectivos = dict(db.session.execute(db.select(Efectivo.usuario_id, Efectivo.id).where(Efectivo.usuario_id.in_([o.id for o in officers]))).all())
    headers = builders.headers(sup)
    tareas = []
    for k in range(0, len(officers), per_tarea):
        tarea = builders.tarea(sup)
        ids = [efectivos[o.id] for o in officers[k : k + per_tarea]]
        response = servers[(k // per_tarea) % len(servers)].post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": ids}, headers=headers)
        assert response.status_code == 200, response.text
        tareas.append(tarea.id)
    return tareas


def _escalation_counts(url: str) -> tuple[int, int, int, int]:
    """(escalated rows, notification_escalated events, distinct notifications in them, escalation notifications),
    read in one statement so that a sweep committing meanwhile cannot split the snapshot."""
    row = _query(
        url,
        "SELECT (SELECT count(*) FROM notificaciones WHERE causa = 'asignacion' AND escalada_en IS NOT NULL),"
        " (SELECT count(*) FROM eventos WHERE event_type = 'notification_escalated'),"
        " (SELECT count(DISTINCT entity_id) FROM eventos WHERE event_type = 'notification_escalated'),"
        " (SELECT count(*) FROM notificaciones WHERE causa = 'escalacion')",
    )[0]
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def test_100_unanswered_assignments_escalate_exactly_once_with_both_servers_sweeping(
    own_db: str, fresh: Builders, two_servers: tuple[LiveServer, LiveServer]
) -> None:
    sup = fresh.usuario(2)
    officers = _officers(fresh.app, 100)
    watcher = WsClient(two_servers[0].url, fresh.token(sup))
    watcher.recv()
    _assign_many(two_servers, fresh, sup, officers)
    _wait(lambda: _escalation_counts(own_db)[0] == 100, 30, "100 escalations")
    time.sleep(1.0)  # several more sweeps of both servers: nothing fires twice
    assert _escalation_counts(own_db) == (100, 100, 100, 100)
    # The supervisor's socket received each escalation once, as a notification to them.
    got = Counter()
    while sum(got.values()) < 100:
        frame = _next_of(watcher, "notification")
        if frame["data"]["causa"] == "escalacion":
            got[frame["data"]["origen_id"]] += 1
    assert len(got) == 100 and set(got.values()) == {1}
    watcher.close()


def test_emergency_and_answers_reach_the_operators_socket(own_db: str, fresh: Builders, two_servers: tuple[LiveServer, LiveServer]) -> None:
    sup = fresh.usuario(2)
    [officer] = _officers(fresh.app, 1)
    with fresh.app.app_context():
        efectivo = db.session.scalars(db.select(Efectivo).where(Efectivo.usuario_id == officer.id)).one()
        efectivo.lat, efectivo.lon, efectivo.posicion_en = 40.4169, -3.7035, datetime.now(UTC)
        db.session.commit()
    operator = WsClient(two_servers[0].url, fresh.token(sup))
    operator.recv()
    phone = WsClient(two_servers[1].url, fresh.token(officer))
    phone.recv()
    # The same officer's second device, on the other server: every socket of the recipient gets it.
    laptop = WsClient(two_servers[0].url, fresh.token(officer))
    laptop.recv()
    raised = two_servers[0].post("/api/v1/tasks/emergency", json={"lat": 40.4169, "lng": -3.7035}, headers=fresh.headers(sup))
    assert raised.status_code == 201
    mine = _next_of(phone, "notification")["data"]
    assert _next_of(laptop, "notification")["data"]["id"] == mine["id"]
    laptop.close()
    assert mine["causa"] == "emergencia" and mine["requiere_respuesta"] is True
    told = _next_of(operator, "notification")["data"]
    assert told["causa"] == "emergencia" and told["usuario_id"] == sup.id
    headers = {"Authorization": f"Bearer {fresh.token(officer)}"}
    assert two_servers[1].post(f"/api/v1/notificaciones/{mine['id']}/ack", json={"respuesta": "acepto"}, headers=headers).status_code == 200
    answered = _next_of(operator, "notification_answered")["data"]
    assert (answered["id"], answered["respuesta"], answered["tarea_id"]) == (mine["id"], "acepto", raised.json()["tarea"]["id"])
    operator.close()
    phone.close()
    with fresh.app.app_context():
        assert db.session.get(Tarea, answered["tarea_id"]) is not None


def test_racing_answers_on_two_servers_leave_exactly_one(own_db: str, fresh: Builders, two_servers: tuple[LiveServer, LiveServer]) -> None:
    [officer] = _officers(fresh.app, 1)
    n = fresh.notificacion(officer, causa="asignacion")
    headers = {"Authorization": f"Bearer {fresh.token(officer)}"}

    def answer(i: int) -> tuple[str, int]:
        respuesta = "acepto" if i % 2 else "no_puedo"
        server = two_servers[i % 2]
        return respuesta, server.post(f"/api/v1/notificaciones/{n.id}/ack", json={"respuesta": respuesta}, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(answer, range(10)))
    [(stored,)] = _query(own_db, "SELECT respuesta FROM notificaciones WHERE id = %s", (n.id,))
    assert {status for respuesta, status in results if respuesta == stored} == {200}
    assert {status for respuesta, status in results if respuesta != stored} == {409}
    assert _query(own_db, "SELECT count(*) FROM eventos WHERE event_type = 'notification_answered'")[0][0] == 1
