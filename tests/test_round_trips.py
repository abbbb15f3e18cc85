"""Statements per request on the hot paths: a budget per operation, so extra round trips cannot creep back.

Counted on the engine (every statement SQLAlchemy sends; BEGIN and COMMIT are not statements here). Each
budget is what the operation needs with its guarantees: the caller's usuario, the row(s) it changes, the
history row, and two for the event log (take ids from the counter; append rows + chain head + NOTIFY) — one
where the change's own statement takes the ids (a create).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

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
