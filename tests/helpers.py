"""Small helpers shared by several test modules: reading the event log, counting rows, calling the API/CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from gad.extensions import db
from gad.models import Evento
from tests.conftest import ROOT, LiveServer

# A minimal valid tarea body for POST /api/v1/tasks.
TAREA = {"codigo": "PAT-001", "titulo": "Patrullaje nocturno", "tipo": "patrullaje", "prioridad": 3}


@contextmanager
def sent_to(app: Flask) -> Iterator[list[str]]:
    """Every statement ``app``'s engine sends meanwhile (BEGIN and COMMIT are not statements here)."""
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


def all_events(app: Flask) -> list[Evento]:
    """Every event in the log, oldest first."""
    with app.app_context():
        return list(db.session.query(Evento).order_by(Evento.id))


def count_rows(app: Flask, model: Any) -> int:
    with app.app_context():
        return int(db.session.query(model).count())


def transition(client: FlaskClient, headers: dict, tarea_id: int, estado: str, **extra: Any) -> Any:
    return client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": estado, **extra}, headers=headers)


def run_flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``flask --app wsgi <args>`` in a child process, from the repository root."""
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


PROBLEM = "application/problem+json"


def _json(response: Any) -> Any:
    # A Flask test client's response or a requests one.
    return response.get_json() if hasattr(response, "get_json") else response.json()


def problem_fields(response: Any) -> set[str]:
    """The field paths a problem+json answer names (``body.codigo``, ``query.desde``)."""
    return {error["field"] for error in _json(response).get("errors") or []}


def assert_422_naming(response: Any, field: str) -> None:
    assert response.status_code == 422, (field, response.status_code, response.text[:300])
    assert response.headers["Content-Type"] == PROBLEM
    assert field in problem_fields(response), (field, _json(response))


def tarea_body(codigo: str, **overrides: Any) -> dict[str, Any]:
    return {"codigo": codigo, "titulo": "Patrulla de prueba", "tipo": "patrullaje"} | overrides


def wait_until_heard(server: LiveServer, admin_headers: dict[str, str], event_id: int, timeout: float = 10) -> None:
    """Until ``server``'s event listener has read event ``event_id`` (its /ws/stats reports the last id it read)."""
    deadline = time.monotonic() + timeout
    while (last := server.get("/ws/stats", headers=admin_headers).json()["last_event_id"]) < event_id:
        assert time.monotonic() < deadline, f"listener still at event {last}, waiting for {event_id}"
        time.sleep(0.02)
