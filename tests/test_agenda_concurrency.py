"""The agenda under racing requests, over real HTTP (gunicorn + gevent) and real PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from gad.extensions import db
from gad.models import Asignacion, Licencia, Turno
from tests.builders import Builders
from tests.conftest import LiveServer
from tests.test_concurrency import _burst

pytestmark = pytest.mark.slow
T0 = datetime(2027, 5, 3, 6, 0, tzinfo=UTC)


def test_50_concurrent_overlapping_turnos_one_201_the_rest_409_naming_it(app: Flask, build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)

    def create(i: int):  # type: ignore[no-untyped-def]
        start = T0 + timedelta(minutes=5 * i)  # every request overlaps every other one
        body = {"efectivo_id": efectivo.id, "inicio": start.isoformat(), "fin": (start + timedelta(hours=8)).isoformat()}
        return live_server.post("/api/v1/turnos", json=body, headers=headers)

    responses = _burst(50, create)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 49}, statuses
    winner = next(r for r in responses if r.status_code == 201).json()["items"][0]["id"]
    assert {r.json()["conflicto"]["id"] for r in responses if r.status_code == 409} == {winner}
    assert all(r.headers["Content-Type"] == "application/problem+json" for r in responses if r.status_code == 409)
    with app.app_context():
        assert db.session.query(Turno).count() == 1


def test_racing_licencias_and_turnos_never_leave_a_turno_inside_a_licencia(app: Flask, build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)

    def create(i: int):  # type: ignore[no-untyped-def]
        if i % 2:
            start = T0 + timedelta(hours=8 * i)  # turnos that do not overlap each other
            body = {"efectivo_id": efectivo.id, "inicio": start.isoformat(), "fin": (start + timedelta(hours=8)).isoformat()}
            return live_server.post("/api/v1/turnos", json=body, headers=headers)
        body = {"efectivo_id": efectivo.id, "tipo": "enfermedad", "inicio": T0.isoformat(), "fin": (T0 + timedelta(days=30)).isoformat()}
        return live_server.post("/api/v1/licencias", json=body, headers=headers)

    responses = _burst(30, create)
    assert {r.status_code for r in responses} <= {201, 409}
    with app.app_context():
        licencias = db.session.query(Licencia).count()
        turnos = db.session.query(Turno).count()
        inside = db.session.scalar(db.text("SELECT count(*) FROM turnos t JOIN licencias l ON l.efectivo_id = t.efectivo_id AND l.periodo && t.periodo"))
    assert licencias <= 1
    assert inside == 0 and (licencias == 0 or turnos == 0), (licencias, turnos)


def test_racing_leave_and_an_unscheduled_assignment_never_both_win(app: Flask, build: Builders, live_server: LiveServer) -> None:
    """A licencia covering now and an open-ended assignment of the same efectivo, sent together: one wins, the other
    is 409, and the efectivo never ends on a running tarea with leave covering that moment (leave that starts later
    is the planner's to cover, and accepted)."""
    sup = build.usuario(2)
    headers = build.headers(sup)
    now = datetime.now(UTC)
    for _ in range(5):
        efectivo = build.efectivo()
        tarea = build.tarea(sup, inicio_programado=None, fin_programado=None)

        def send(i: int, efectivo_id: int = efectivo.id, tarea_id: int = tarea.id):  # type: ignore[no-untyped-def]
            if i % 2:
                return live_server.post(f"/api/v1/tasks/{tarea_id}/efectivos", json={"efectivo_ids": [efectivo_id]}, headers=headers)
            body = {
                "efectivo_id": efectivo_id,
                "tipo": "vacaciones",
                "inicio": (now - timedelta(hours=1)).isoformat(),
                "fin": (now + timedelta(days=1)).isoformat(),
            }
            return live_server.post("/api/v1/licencias", json=body, headers=headers)

        statuses = sorted(r.status_code for r in _burst(2, send))
        assert statuses in ([200, 409], [201, 409]), statuses
        with app.app_context():
            on_leave = db.session.query(Licencia).filter_by(efectivo_id=efectivo.id).count()
            working = db.session.query(Asignacion).filter_by(efectivo_id=efectivo.id, liberado_en=None).count()
        assert on_leave + working == 1, (on_leave, working)


def test_pattern_colliding_in_week_30_is_refused_whole_over_http(app: Flask, build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    week30 = T0 + timedelta(weeks=29)
    first = live_server.post(
        "/api/v1/turnos",
        json={"efectivo_id": efectivo.id, "inicio": (week30 + timedelta(hours=4)).isoformat(), "fin": (week30 + timedelta(hours=10)).isoformat()},
        headers=headers,
    )
    assert first.status_code == 201
    pattern = {
        "efectivo_id": efectivo.id,
        "inicio": T0.isoformat(),
        "fin": (T0 + timedelta(hours=8)).isoformat(),
        "repetir": {"cada_horas": 168, "hasta": (T0 + timedelta(weeks=52)).isoformat()},
    }
    refused = live_server.post("/api/v1/turnos", json=pattern, headers=headers)
    assert refused.status_code == 409
    assert refused.json()["conflicto"]["id"] == first.json()["items"][0]["id"] and refused.json()["conflicto"]["ocurrencia"] == 29
    with app.app_context():
        assert db.session.query(Turno).count() == 1
        assert db.session.query(Asignacion).count() == 0


def test_50_racing_bookings_of_one_efectivo_one_wins_the_rest_409_naming_it(app: Flask, build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    # 50 tareas whose windows all overlap each other (each starts 2 minutes after the previous one).
    tareas = [build.tarea(sup, inicio_programado=T0 + timedelta(minutes=2 * i), fin_programado=T0 + timedelta(hours=3, minutes=2 * i)) for i in range(50)]
    headers = build.headers(sup)
    responses = _burst(50, lambda i: live_server.post(f"/api/v1/tasks/{tareas[i].id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 49}, statuses
    winner = next(r for r in responses if r.status_code == 200).json()["id"]
    assert {r.json()["tarea_id"] for r in responses if r.status_code == 409} == {winner}
    with app.app_context():
        active = db.session.query(Asignacion).filter(Asignacion.liberado_en.is_(None)).all()
        assert [a.tarea_id for a in active] == [winner]
