"""Statements per request on the hot paths: a budget per operation, so extra round trips cannot creep back.

Counted on the engine (every statement SQLAlchemy sends; BEGIN and COMMIT are not statements here). Each
budget is what the operation needs with its guarantees: the caller's usuario (checked inside a create's INSERT
when the token cache knows the caller), the row(s) it changes, the
history row, and two for the event log (take ids from the counter; append rows + chain head + NOTIFY) — one
where the change's own statement takes the ids (a create).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2.extensions
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from gad.extensions import db
from gad.realtime import events
from gad.services import auth
from tests.builders import Builders
from tests.helpers import sent_to


@pytest.fixture
def statements(app: Flask) -> Iterator[list[str]]:
    with sent_to(app) as sent:
        yield sent


def _sent_by(statements: list[str], call: Any) -> tuple[Any, list[str]]:
    statements.clear()
    response = call()
    return response, list(statements)


def _per_request(sent: list[str]) -> list[str]:
    """What a request costs every time: a prepared read's PREPARE (or the eviction of an older statement) is
    paid once per pooled connection, the first time that connection runs it (gad.pg.Prepared, tests/test_prepared.py)."""
    return [s for s in sent if not s.startswith(("PREPARE ", "DEALLOCATE "))]


def test_writes_and_reads_stay_within_their_statement_budgets(client: FlaskClient, build: Builders, statements: list[str]) -> None:
    supervisor = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(supervisor)
    client.get("/api/v1/users/me", headers=headers)  # warm: prepared statement caches, first-request work

    created, sent = _sent_by(
        statements, lambda: client.post("/api/v1/tasks", json={"codigo": "RT-1", "titulo": "Contar sentencias", "tipo": "patrullaje"}, headers=headers)
    )
    # The caller; the tarea with its creation history row and its event's id from the counter, a taken codigo
    # decided by the INSERT itself (one statement, prepared); the event log's append with the COMMIT (one round
    # trip). What they say is checked in plain SQL below.
    assert created.status_code == 201 and len(_per_request(sent)) <= 3 and _per_request(sent)[1].startswith("EXECUTE "), sent
    assert _per_request(sent)[2].rstrip().endswith("; COMMIT"), sent
    tarea_id = created.get_json()["id"]

    assigned, sent = _sent_by(statements, lambda: client.post(f"/api/v1/tasks/{tarea_id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers))
    # Two of these are the SAVEPOINT pair around the booking insert (a racing overlap becomes a 409 naming the
    # other tarea instead of failing the transaction) and one is the efectivo's en_servicio (issue 17).
    assert assigned.status_code == 200 and len(_per_request(sent)) <= 12, sent

    started, sent = _sent_by(statements, lambda: client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": "en_curso"}, headers=headers))
    assert started.status_code == 200 and len(_per_request(sent)) <= 11, sent

    read, sent = _sent_by(statements, lambda: client.get(f"/api/v1/tasks/{tarea_id}", headers=headers))
    assert read.status_code == 200 and len(_per_request(sent)) <= 2 and sent[-1].startswith("EXECUTE "), sent

    me, sent = _sent_by(statements, lambda: client.get("/api/v1/users/me", headers=headers))
    assert me.status_code == 200 and len(sent) <= 1, sent


def test_unassigning_tells_the_efectivo_with_two_statements_more(client: FlaskClient, build: Builders, statements: list[str]) -> None:
    """Unassigning cost 9 statements before the released efectivo was told (a desasignacion notification); it
    now costs 11: the ledger's row and its delivery record (the in-app channel's event rides in the log's append,
    and the recipient's name comes with the assignment's row, so no SELECT of usuarios)."""
    supervisor, officer = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    headers = build.headers(supervisor)
    tarea_id = client.post("/api/v1/tasks", json={"codigo": "RT-3", "titulo": "Contar sentencias", "tipo": "patrullaje"}, headers=headers).get_json()["id"]
    assert client.post(f"/api/v1/tasks/{tarea_id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers).status_code == 200

    released, sent = _sent_by(statements, lambda: client.delete(f"/api/v1/tasks/{tarea_id}/efectivos/{efectivo.id}", headers=headers))
    per_request = _per_request(sent)
    assert released.status_code == 200 and len(per_request) <= 11, sent
    assert sum(s.startswith("INSERT INTO notificaciones ") for s in per_request) == 1, sent
    assert sum(s.startswith("INSERT INTO notificacion_entregas ") for s in per_request) == 1, sent
    assert not any("FROM usuarios" in s for s in per_request[1:]), sent  # the first is the caller's token


def test_a_create_takes_its_event_id_in_its_insert_and_appends_with_notify_in_one_statement(app_with: Any, build: Builders) -> None:
    """The create's statements as SQL (prepared statements off): the counter is taken in the INSERT of the tarea
    and its history row, and the event's rows, the chain head, the NOTIFY and the COMMIT go in one round trip."""
    plain = app_with(DB_PREPARED_STATEMENTS=False)
    headers = build.headers(build.usuario(2))
    with sent_to(plain) as sent:
        created = plain.test_client().post("/api/v1/tasks", json={"codigo": "RT-2", "titulo": "Contar sentencias", "tipo": "patrullaje"}, headers=headers)
    assert created.status_code == 201 and len(sent) <= 3, sent
    assert sum("eventos_contador" in s for s in sent) == 2 and "INSERT INTO tareas" in sent[1] and "eventos_contador" in sent[1], sent
    assert sum("INSERT INTO eventos" in s for s in sent) == 1 and "pg_notify" in sent[2] and "INSERT INTO eventos" in sent[2], sent
    assert sent[2].rstrip().endswith("; COMMIT"), sent  # the commit travels with the append


def test_lists_are_one_statement_each(client: FlaskClient, build: Builders, statements: list[str]) -> None:
    """Every list is one statement whose JSON PostgreSQL builds (page, total, visibility and filters in it),
    plus the one that reads the caller as GET one does."""
    admin = build.usuario(3)
    tarea = build.tarea(admin)
    for _ in range(3):
        build.efectivo()
    headers = build.headers(admin)
    client.get("/api/v1/users/me", headers=headers)  # warm
    for path in (
        "/api/v1/tasks?limit=100",
        "/api/v1/efectivos?limit=100&q=a",
        "/api/v1/users?limit=100",
        "/api/v1/eventos?limit=100",
        f"/api/v1/tasks/{tarea.id}/historial",
    ):
        listed, sent = _sent_by(statements, lambda path=path: client.get(path, headers=headers))
        assert listed.status_code == 200 and len(_per_request(sent)) <= 2, (path, sent)


class _Wire(psycopg2.extensions.cursor):
    """A psycopg2 cursor that records what it sends and whether psycopg2 was in autocommit (then psycopg2 sent
    no BEGIN or COMMIT of its own: every round trip went through a cursor's execute)."""

    sent: list[tuple[str, bool]] = []

    def execute(self, query: Any, vars: Any = None) -> Any:
        _Wire.sent.append((str(query), bool(self.connection.autocommit)))
        return super().execute(query, vars)


@contextmanager
def _on_the_wire(app: Flask) -> Iterator[list[tuple[str, bool]]]:
    with app.app_context():
        engine = db.engine

    def record(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.cursor_factory = _Wire

    def stop(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.cursor_factory = psycopg2.extensions.cursor

    _Wire.sent = []
    event.listen(engine, "checkout", record)
    event.listen(engine, "checkin", stop)
    try:
        yield _Wire.sent
    finally:
        event.remove(engine, "checkout", record)
        event.remove(engine, "checkin", stop)


def test_a_create_reaches_postgresql_in_three_round_trips_its_begin_and_commit_included(client: FlaskClient, build: Builders, app: Flask) -> None:
    """What psycopg2 sends, BEGIN and COMMIT included (gad.pg.install_begin_with_first_statement): the transaction
    opens with the caller's re-check and closes with the event log's append; psycopg2 sends nothing of its own."""
    headers = build.headers(build.usuario(2))
    body = {"titulo": "Contar idas y vueltas", "tipo": "patrullaje"}
    client.post("/api/v1/tasks", json=body | {"codigo": "RT-W0"}, headers=headers)  # warm: statements prepared
    with _on_the_wire(app) as sent:
        created = client.post("/api/v1/tasks", json=body | {"codigo": "RT-W1"}, headers=headers)
    assert created.status_code == 201, created.get_json()
    assert len(sent) == 3 and all(autocommit for _, autocommit in sent), sent
    assert sent[0][0].startswith("BEGIN; EXECUTE ") and auth._PRINCIPAL._compile()[0] in sent[0][0], sent  # the caller
    assert sent[1][0].startswith("EXECUTE "), sent
    assert sent[2][0] == f"EXECUTE {events._APPEND_SQL._compile()[0]}(%s, %s, %s, %s, %s); COMMIT", sent  # the append

    # A taken codigo: the same two statements, then ROLLBACK, and the connection is left with no transaction open.
    with _on_the_wire(app) as sent:
        taken = client.post("/api/v1/tasks", json=body | {"codigo": "RT-W1"}, headers=headers)
    assert taken.status_code == 409
    assert [query.split(";")[0] for query, _ in sent][-1] == "ROLLBACK" and len(sent) == 3, sent
    with app.app_context(), db.engine.connect() as connection:
        assert connection.connection.dbapi_connection.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE  # type: ignore[union-attr]
        assert connection.exec_driver_sql("SELECT count(*) FROM tareas WHERE codigo IN ('RT-W0', 'RT-W1')").scalar() == 2


def test_a_create_whose_caller_the_token_cache_knows_reaches_postgresql_in_two_round_trips(
    client: FlaskClient, build: Builders, app: Flask, listener_connected: None
) -> None:
    """With the token cache in use (a worker whose event listener is connected), the create's INSERT checks the
    caller itself (tests/test_write_caller_check.py): the round trip that read the caller first is gone."""
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    body = {"titulo": "Contar idas y vueltas", "tipo": "patrullaje"}
    for warm in ("RT-C0", "RT-C00"):  # the first learns the token for the cache, the second prepares the checked INSERT
        assert client.post("/api/v1/tasks", json=body | {"codigo": warm}, headers=headers).status_code == 201
    with _on_the_wire(app) as sent:
        created = client.post("/api/v1/tasks", json=body | {"codigo": "RT-C1"}, headers=headers)
    assert created.status_code == 201, created.get_json()
    assert len(sent) == 2 and sent[0][0].startswith("BEGIN; EXECUTE ") and sent[1][0].endswith("; COMMIT"), sent
    assert not any(auth._PRINCIPAL._compile()[0] in query for query, _ in sent), sent
    with app.app_context(), db.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT creado_por_usuario_id FROM tareas WHERE codigo = 'RT-C1'").scalar() == supervisor.id


def test_an_assignment_a_transition_and_a_release_read_no_caller_of_their_own_when_the_cache_knows_it(
    client: FlaskClient, build: Builders, statements: list[str], listener_connected: None
) -> None:
    """The tarea's lock checks the cached caller (tests/test_write_caller_check.py): one statement fewer each than
    the budgets above, which hold for a caller read from PostgreSQL."""
    supervisor = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(supervisor)
    created = client.post("/api/v1/tasks", json={"codigo": "RT-L1", "titulo": "Contar sentencias", "tipo": "patrullaje"}, headers=headers)
    assert created.status_code == 201  # a tarea without a window, as above; and the cache learns the token
    base = f"/api/v1/tasks/{created.get_json()['id']}"
    for name, call, budget in (
        ("assign", lambda: client.post(f"{base}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers), 11),
        ("start", lambda: client.post(f"{base}/estado", json={"estado": "en_curso"}, headers=headers), 10),
        ("release", lambda: client.delete(f"{base}/efectivos/{efectivo.id}", headers=headers), 10),
    ):
        done, sent = _sent_by(statements, call)
        assert done.status_code == 200 and len(_per_request(sent)) <= budget, (name, sent)
        assert not any(auth._PRINCIPAL._compile()[0] in query for query in sent), (name, sent)


def test_a_position_reaches_postgresql_in_two_round_trips(client: FlaskClient, build: Builders, app: Flask, listener_connected: None) -> None:
    """A phone reports its position every few seconds, the bulk of the service's writes. One statement updates the
    efectivo (the fix not older, the caller's own or a supervisor's), checks the cached caller
    (tests/test_write_caller_check.py), takes the event's id and returns the document; the append carries the
    COMMIT. It was six: the caller, the lock, the UPDATE, en_servicio read back, the event's id, the append."""
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    headers = build.headers(officer)
    path = f"/api/v1/efectivos/{efectivo.id}/ubicacion"
    for lat in (40.1, 40.2):  # the first reads the caller and lets the cache learn the token; the second prepares
        assert client.put(path, json={"lat": lat, "lng": -3.7}, headers=headers).status_code == 200
    with _on_the_wire(app) as sent:
        moved = client.put(path, json={"lat": 40.3, "lng": -3.7}, headers=headers)
    assert moved.status_code == 200 and moved.get_json()["lat"] == 40.3, moved.get_json()
    assert len(sent) == 2 and sent[0][0].startswith("BEGIN; EXECUTE ") and sent[1][0].endswith("; COMMIT"), sent
    assert not any(auth._PRINCIPAL._compile()[0] in query for query, _ in sent), sent
    assert moved.get_json()["en_servicio"] is False  # no turno


def test_a_transaction_without_a_statement_sends_nothing_and_a_savepoint_can_open_one(app: Flask) -> None:
    """SQLAlchemy's begin costs nothing until a statement runs; a SAVEPOINT as first statement opens the transaction
    with it, and what it wrote is rolled back with the transaction."""
    with app.app_context(), _on_the_wire(app) as sent, db.engine.connect() as connection:
        connection.begin()
        connection.commit()
        assert sent == []
        with connection.begin():
            with connection.begin_nested():
                connection.exec_driver_sql("CREATE TEMP TABLE wire_probe (x int)")
            assert connection.connection.dbapi_connection.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE  # type: ignore[union-attr]
            connection.rollback()
        assert connection.exec_driver_sql("SELECT to_regclass('pg_temp.wire_probe') IS NULL").scalar() is True
    assert sent[0][0].startswith("BEGIN; SAVEPOINT"), sent
    assert [query.split()[0] for query, _ in sent[:4]] == ["BEGIN;", "CREATE", "RELEASE", "ROLLBACK"], sent
