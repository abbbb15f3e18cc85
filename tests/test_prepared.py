"""Hot reads as server-side prepared statements (gad.pg.Prepared): planned once per connection, same answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from gad import pg
from gad.extensions import db
from tests.builders import Builders

PATHS = (
    "/api/v1/tasks/{id}",
    "/api/v1/tasks/{id}/historial",
    "/api/v1/tasks?limit=100",
    "/api/v1/tasks?limit=5&offset=1&sort=prioridad&estado=programada&q=PREP",
    "/api/v1/tasks?limit=5&tipo=patrullaje&prioridad_min=1",
)


@contextmanager
def sent_to(app: Flask) -> Iterator[list[str]]:
    """Every statement ``app``'s engine sends meanwhile."""
    sent: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_each_read_is_prepared_once_per_connection_then_executed_by_name(app_with: Callable[..., Flask], build: Builders) -> None:
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)  # one connection: "once per connection" is "once" here
    plain = app_with(DB_PREPARED_STATEMENTS=False)
    admin, agente = build.usuario(3), build.usuario(1)
    tarea = build.tarea(admin, codigo="PREP-1", delegado_usuario_id=agente.id)
    for reader in (admin, agente):
        headers = build.headers(reader)
        for path in (p.format(id=tarea.id) for p in PATHS):
            with sent_to(app) as sent:
                first = app.test_client().get(path, headers=headers)
                second = app.test_client().get(path, headers=headers)
            with sent_to(plain) as sent_plain:
                expected = plain.test_client().get(path, headers=headers)
            assert first.status_code == second.status_code == expected.status_code == 200, (path, first.get_json())
            # The same document either way (the ETag too): the prepared path changes how, not what.
            assert first.get_data() == second.get_data() == expected.get_data(), path
            assert first.headers.get("ETag") == expected.headers.get("ETag")
            prepares = [s for s in sent if s.startswith("PREPARE ")]
            executes = [s for s in sent if s.startswith("EXECUTE ")]
            assert len(prepares) <= 1 and len(executes) == 2, (path, sent)  # at most once: an earlier path may share it
            assert not [s for s in sent_plain if s.startswith(("PREPARE ", "EXECUTE "))], sent_plain


def test_a_failing_first_execution_leaves_the_connection_usable(app_with: Callable[..., Flask], build: Builders) -> None:
    """The PREPARE is its own round trip: an EXECUTE that fails (an id beyond PostgreSQL's integer) is a
    422, and the statement stays known to the connection for the next request."""
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    admin = build.usuario(3)
    tarea = build.tarea(admin)
    headers = build.headers(admin)
    client = app.test_client()
    with sent_to(app) as sent:
        for _ in range(2):
            beyond = client.get("/api/v1/tasks/99999999999", headers=headers)
            assert beyond.status_code == 422 and beyond.mimetype == "application/problem+json", beyond.get_data()
            assert client.get(f"/api/v1/tasks/{tarea.id}", headers=headers).status_code == 200
    assert len([s for s in sent if s.startswith("PREPARE ")]) == 1, sent


def test_a_connection_past_its_statement_limit_drops_them_and_goes_on(app_with: Callable[..., Flask], build: Builders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "MAX_PREPARED_PER_CONNECTION", 2)
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    admin = build.usuario(3)
    tarea = build.tarea(admin, codigo="PREP-2")
    headers = build.headers(admin)
    client = app.test_client()
    paths = [p.format(id=tarea.id) for p in PATHS]
    with sent_to(app) as sent:
        answers = [client.get(path, headers=headers) for path in paths * 2]
    assert all(a.status_code == 200 for a in answers), [a.get_json() for a in answers]
    assert [a.get_data() for a in answers[: len(paths)]] == [a.get_data() for a in answers[len(paths) :]]
    assert "DEALLOCATE ALL" in sent
    assert sum(s.startswith("PREPARE ") for s in sent) > len(paths)  # prepared again after each drop
