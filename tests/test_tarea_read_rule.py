"""Who may read a tarea: every expression of the rule (Python policy, SQL filter, PostgreSQL-built JSON,
live events, replay) agrees on every case, for every role (docs/ARCHITECTURE.md §4, "who may read a tarea")."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from flask import Flask

from gad import policy
from gad.errors import Forbidden
from gad.extensions import db
from gad.models import Evento, Usuario
from gad.services import asignaciones, tarea_json, tareas, transitions
from gad.services.tarea_queries import tareas_now
from gad.vocab import EstadoTarea, TipoTarea
from tests.builders import Builders
from tests.conftest import make_app, recreate_database
from tests.helpers import run_flask

# case -> may a nivel-1 usuario whose efectivo took part read it? (supervisors and administradores read all)
CASES = {
    "active": True,  # assigned now
    "reassigned": False,  # taken off while the tarea goes on (issue 13 B8)
    "reassigned_then_closed": False,  # taken off, and the tarea finished later without them
    "finalizada": True,  # worked it until it finished: its closing released the assignment
    "cancelada": True,  # assigned until it was cancelled
    "never": False,  # never assigned
}


def _build(admin: Usuario, efectivo_id: int) -> dict[str, int]:
    """One tarea per case, driven through the services as the API would."""
    ids: dict[str, int] = {}

    def create(case: str) -> int:
        ids[case] = tareas.create_tarea(admin, {"codigo": f"RR-{len(ids) + 1:03d}", "titulo": case, "tipo": TipoTarea.PATRULLAJE, "prioridad": 2}).id
        return ids[case]

    # The efectivo holds one unscheduled tarea at a time, so the cases are built one after the other.
    tarea = create("reassigned")
    asignaciones.assign(admin, tarea, [efectivo_id], None)
    transitions.transition(admin, tarea, EstadoTarea.EN_CURSO, None, None)
    asignaciones.unassign(admin, tarea, efectivo_id, None)
    tarea = create("reassigned_then_closed")
    asignaciones.assign(admin, tarea, [efectivo_id], None)
    transitions.transition(admin, tarea, EstadoTarea.EN_CURSO, None, None)
    asignaciones.unassign(admin, tarea, efectivo_id, None)
    transitions.transition(admin, tarea, EstadoTarea.FINALIZADA, None, None)
    tarea = create("finalizada")
    asignaciones.assign(admin, tarea, [efectivo_id], None)
    transitions.transition(admin, tarea, EstadoTarea.EN_CURSO, None, None)
    transitions.transition(admin, tarea, EstadoTarea.FINALIZADA, None, None)
    tarea = create("cancelada")
    asignaciones.assign(admin, tarea, [efectivo_id], None)
    transitions.transition(admin, tarea, EstadoTarea.CANCELADA, "sin efecto", None)
    create("never")
    tarea = create("active")
    asignaciones.assign(admin, tarea, [efectivo_id], None)
    db.session.commit()
    return ids


def _allowed(call: Callable[[], Any]) -> bool:
    try:
        call()
    except Forbidden:
        return False
    return True


def _every_expression(actor: Usuario, ids: dict[str, int]) -> dict[str, dict[str, bool]]:
    """For each case, what each expression of the read rule answers for ``actor``."""
    listed_py = {row["id"] for row in tareas.list_tareas(actor, {}, 100, 0)[0]}
    listed_sql = {item["id"] for item in json.loads(tarea_json.page_json(actor, {}, 100, 0))["items"]}
    now = tareas_now(set(ids.values()))
    answers: dict[str, dict[str, bool]] = {}
    for case, tarea_id in ids.items():
        last = db.session.query(Evento).filter(Evento.entity_type == "tarea", Evento.entity_id == tarea_id).order_by(Evento.id.desc()).first()
        assert last is not None
        answers[case] = {
            "get_tarea (ORM, policy.can_read_tarea)": _allowed(lambda tarea_id=tarea_id: tareas.get_tarea(actor, tarea_id)),
            "read_tarea (rows)": _allowed(lambda tarea_id=tarea_id: tareas.read_tarea(actor, tarea_id)),
            "list_tareas (SQL filter)": tarea_id in listed_py,
            "tarea_json (GET one, PostgreSQL JSON)": _allowed(lambda tarea_id=tarea_id: tarea_json.tarea_json(actor, tarea_id)),
            "page_json (GET list, PostgreSQL JSON)": tarea_id in listed_sql,
            "live event (policy.can_see_event)": policy.can_see_event(actor, last.topic, last.payload),
            "replay (policy.can_see_replayed_event)": policy.can_see_replayed_event(actor, last.topic, last.payload, now, {}),
        }
    return answers


# reader -> (nivel, whether it is the usuario whose efectivo took part)
READERS = {"worker": (1, True), "stranger": (1, False), "supervisor": (2, False), "administrador": (3, False)}


@pytest.mark.parametrize("reader", READERS)
def test_every_expression_of_the_tarea_read_rule_agrees(app: Flask, build: Builders, reader: str) -> None:
    nivel, worked = READERS[reader]
    admin_id = build.usuario(3).id
    worker = build.usuario(1)
    efectivo_id = build.efectivo(usuario_id=worker.id).id
    reader_id = worker.id if worked else build.usuario(nivel).id
    with app.app_context():
        admin = db.session.get(Usuario, admin_id)
        assert admin is not None
        ids = _build(admin, efectivo_id)
        actor = db.session.get(Usuario, reader_id)
        assert actor is not None
        answers = _every_expression(actor, ids)
    # Supervisors read everything; a nivel-1 usuario only what their efectivo's assignments allow.
    expected = {case: nivel >= 2 or (worked and may) for case, may in CASES.items()}
    wrong = {case: {name: got for name, got in by.items() if got != expected[case]} for case, by in answers.items()}
    assert not any(wrong.values()), f"expected {expected}; disagreements: {wrong}"


def test_upgrade_marks_the_assignments_existing_tareas_released_at_their_end(pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Rows written before 0004j: the service's own marks are dropped by a downgrade, and the upgrade's
    # backfill must put back exactly those (released by the end: yes; taken off a tarea that goes on: no).
    url = recreate_database(pg_server, "gad_liberada_al_cerrar")
    monkeypatch.setenv("TEST_DATABASE_URL", url)  # make_app points it here; put the run's database back afterwards
    assert run_flask(_env(url), "db", "upgrade").returncode == 0
    app = make_app(url)
    build = Builders(app)
    admin_id = build.usuario(3).id
    efectivo_id = build.efectivo(usuario_id=build.usuario(1).id).id
    marks = "SELECT t.titulo, a.liberada_al_cerrar FROM asignaciones a JOIN tareas t ON t.id = a.tarea_id ORDER BY a.id"
    with app.app_context():
        admin = db.session.get(Usuario, admin_id)
        assert admin is not None
        ids = _build(admin, efectivo_id)
        doomed = tareas.create_tarea(admin, {"codigo": "RR-DEL", "titulo": "deleted", "tipo": TipoTarea.PATRULLAJE, "prioridad": 2}).id
        asignaciones.unassign(admin, ids["active"], efectivo_id, None)
        asignaciones.assign(admin, doomed, [efectivo_id], None)
        tareas.delete_tarea(admin, doomed, None)
        db.session.commit()
        written = db.session.execute(db.text(marks)).all()
        db.engine.dispose()
    assert dict(written) == {"reassigned": False, "reassigned_then_closed": False, "finalizada": True, "cancelada": True, "active": False, "deleted": True}
    # Each unassigning above told its efectivo (causa desasignacion, 0004k), whose downgrade refuses while such
    # rows exist: remove them as its message says, so the downgrade reaches 0004g.
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM notificaciones WHERE causa = 'desasignacion'")
    conn.close()
    for step in (("db", "downgrade", "0004g"), ("db", "upgrade")):
        result = run_flask(_env(url), *step)
        assert result.returncode == 0, (step, result.stderr[-2000:])
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(marks)
        assert cur.fetchall() == written
    conn.close()


def _env(url: str) -> dict[str, str]:
    return os.environ | {"GAD_ENV": "development", "DATABASE_URL": url}
