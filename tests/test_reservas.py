"""Reservations: assigning an efectivo to a scheduled tarea books its window; the database refuses double bookings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import IntegrityError

from gad.extensions import db
from gad.models import Asignacion, Evento
from tests.builders import Builders

T0 = datetime(2027, 4, 5, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _assign(client: FlaskClient, headers: dict[str, str], tarea_id: int, efectivo_id: int) -> Any:
    return client.post(f"/api/v1/tasks/{tarea_id}/efectivos", json={"efectivo_ids": [efectivo_id]}, headers=headers)


def _scheduled(build: Builders, sup: Any, start: datetime, hours: float = 2, **extra: Any) -> Any:
    return build.tarea(sup, inicio_programado=start, fin_programado=start + timedelta(hours=hours), **extra)


def test_non_overlapping_windows_book_one_efectivo_twice_overlapping_is_409_naming_the_other(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    morning = _scheduled(build, sup, T0, codigo="MANANA-1")
    afternoon = _scheduled(build, sup, T0 + 6 * H)
    overlapping = _scheduled(build, sup, T0 + H)
    assert _assign(client, headers, morning.id, efectivo.id).status_code == 200
    assert _assign(client, headers, afternoon.id, efectivo.id).status_code == 200
    clash = _assign(client, headers, overlapping.id, efectivo.id)
    assert clash.status_code == 409 and clash.mimetype == "application/problem+json"
    body = clash.get_json()
    assert body["tarea_id"] == morning.id and body["efectivo_id"] == efectivo.id and "MANANA-1" in body["detail"]
    again = _assign(client, headers, morning.id, efectivo.id)
    assert again.status_code == 409 and again.get_json()["tarea_id"] == morning.id
    with app.app_context():
        rows = db.session.query(Asignacion).filter(Asignacion.liberado_en.is_(None)).order_by(Asignacion.id).all()
        assert [(r.tarea_id, r.periodo.lower, r.periodo.upper) for r in rows] == [
            (morning.id, T0, T0 + 2 * H),
            (afternoon.id, T0 + 6 * H, T0 + 8 * H),
        ]


def test_releasing_finishing_or_cancelling_frees_the_window(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    first, second, third, fourth = (_scheduled(build, sup, T0) for _ in range(4))
    assert _assign(client, headers, first.id, efectivo.id).status_code == 200
    assert _assign(client, headers, second.id, efectivo.id).status_code == 409
    assert client.delete(f"/api/v1/tasks/{first.id}/efectivos/{efectivo.id}", headers=headers).status_code == 200
    assert _assign(client, headers, second.id, efectivo.id).status_code == 200
    assert client.post(f"/api/v1/tasks/{second.id}/estado", json={"estado": "cancelada"}, headers=headers).status_code == 200
    assert _assign(client, headers, third.id, efectivo.id).status_code == 200
    for estado in ("en_curso", "finalizada"):
        assert client.post(f"/api/v1/tasks/{third.id}/estado", json={"estado": estado}, headers=headers).status_code == 200
    assert _assign(client, headers, fourth.id, efectivo.id).status_code == 200


def test_booking_inside_a_licencia_is_refused_and_a_licencia_over_a_booking_too(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    leave = build.licencia(efectivo, T0 - 2 * H, dias=1)
    refused = _assign(client, headers, _scheduled(build, sup, T0).id, efectivo.id)
    assert refused.status_code == 409 and refused.get_json()["conflicto"]["clase"] == "licencia" and refused.get_json()["conflicto"]["id"] == leave.id
    later = _scheduled(build, sup, T0 + timedelta(days=3), codigo="LATER-1")
    assert _assign(client, headers, later.id, efectivo.id).status_code == 200
    body = {"efectivo_id": efectivo.id, "tipo": "enfermedad", "inicio": (T0 + timedelta(days=3)).isoformat(), "fin": (T0 + timedelta(days=4)).isoformat()}
    over = client.post("/api/v1/licencias", json=body, headers=headers)
    assert over.status_code == 409 and over.get_json()["conflicto"] == over.get_json()["conflicto"] | {"clase": "reserva", "id": later.id, "codigo": "LATER-1"}


def test_leave_starting_now_is_refused_to_an_efectivo_working_an_unscheduled_tarea(app: Flask, client: FlaskClient, build: Builders) -> None:
    """The other order of "on licencia now": an efectivo already on a tarea without a schedule (an emergency) is not
    put on leave that covers now (it was 201, leaving them on the running tarea with a licencia over it); leave
    starting later is the planner's to cover, and once released the same leave is taken."""
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    tarea = build.tarea(sup, codigo="SINHORA-1", inicio_programado=None, fin_programado=None)
    assert _assign(client, headers, tarea.id, efectivo.id).status_code == 200
    assert client.post(f"/api/v1/tasks/{tarea.id}/estado", json={"estado": "en_curso"}, headers=headers).status_code == 200
    now = datetime.now(UTC)
    ahora = {"efectivo_id": efectivo.id, "tipo": "vacaciones", "inicio": (now - H).isoformat(), "fin": (now + timedelta(days=1)).isoformat()}
    refused = client.post("/api/v1/licencias", json=ahora, headers=headers)
    assert refused.status_code == 409 and refused.mimetype == "application/problem+json"
    body = refused.get_json()
    assert body["tarea_id"] == tarea.id and body["efectivo_id"] == efectivo.id and "SINHORA-1" in body["mensaje"]
    manana = ahora | {"inicio": (now + timedelta(days=1)).isoformat(), "fin": (now + timedelta(days=2)).isoformat()}
    assert client.post("/api/v1/licencias", json=manana, headers=headers).status_code == 201
    assert client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", headers=headers).status_code == 200
    assert client.post("/api/v1/licencias", json=ahora, headers=headers).status_code == 201


def test_booking_outside_turnos_is_flagged_or_refused_by_setting(app: Flask, client: FlaskClient, build: Builders, app_with: Callable[..., Flask]) -> None:
    sup = build.usuario(2)
    covered, uncovered, strict = build.efectivo(), build.efectivo(), build.efectivo()
    build.turno(covered, T0 - H, horas=2)
    build.turno(covered, T0 + H, horas=8)  # back to back: together they cover [T0, T0 + 2 h)
    headers = build.headers(sup)
    tarea = _scheduled(build, sup, T0)
    assert _assign(client, headers, tarea.id, covered.id).status_code == 200
    assert _assign(client, headers, tarea.id, uncovered.id).status_code == 200
    with app.app_context():
        flags = {a.efectivo_id: a.fuera_de_turno for a in db.session.query(Asignacion)}
        event = db.session.query(Evento).filter_by(event_type="task_assigned").order_by(Evento.id.desc()).first()
    assert flags == {covered.id: False, uncovered.id: True}
    assert event is not None and event.payload["fuera_de_turno"] == [uncovered.id]
    requiring_duty = app_with(DESPACHO_REQUIERE_SERVICIO=True).test_client()
    refused = _assign(requiring_duty, headers, tarea.id, strict.id)
    assert refused.status_code == 409 and refused.get_json()["fuera_de_turno"] is True


def test_moving_a_tarea_moves_its_bookings_or_is_409(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    a = _scheduled(build, sup, T0)
    b = _scheduled(build, sup, T0 + 4 * H, codigo="OTRA-B")
    assert _assign(client, headers, a.id, efectivo.id).status_code == 200
    assert _assign(client, headers, b.id, efectivo.id).status_code == 200
    onto_b = client.patch(
        f"/api/v1/tasks/{a.id}", json={"inicio_programado": (T0 + 3 * H).isoformat(), "fin_programado": (T0 + 5 * H).isoformat()}, headers=headers
    )
    assert onto_b.status_code == 409 and onto_b.get_json()["tarea_id"] == b.id
    moved = client.patch(
        f"/api/v1/tasks/{a.id}", json={"inicio_programado": (T0 + 8 * H).isoformat(), "fin_programado": (T0 + 9 * H).isoformat()}, headers=headers
    )
    assert moved.status_code == 200
    with app.app_context():
        booking = db.session.query(Asignacion).filter_by(tarea_id=a.id).one()
        assert (booking.periodo.lower, booking.periodo.upper) == (T0 + 8 * H, T0 + 9 * H)


def test_database_refuses_an_overlapping_booking_written_behind_the_service(app: Flask, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    a, b = _scheduled(build, sup, T0), _scheduled(build, sup, T0 + H)
    with app.app_context():
        insert = "INSERT INTO asignaciones (tarea_id, efectivo_id, asignado_en, periodo) VALUES (:t, :e, now(), tstzrange(:a, :b))"
        db.session.execute(db.text(insert), {"t": a.id, "e": efectivo.id, "a": T0, "b": T0 + 2 * H})
        with pytest.raises(IntegrityError) as refused:
            db.session.execute(db.text(insert), {"t": b.id, "e": efectivo.id, "a": T0 + H, "b": T0 + 3 * H})
        db.session.rollback()
    assert refused.value.orig.diag.constraint_name == "ex_asignaciones_reserva_sin_solape"  # type: ignore[union-attr]


def test_planning_week_shows_turnos_licencias_and_flagged_bookings(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    on, off = build.efectivo(unidad="Móvil 9"), build.efectivo(unidad="Móvil 9")
    build.efectivo(unidad="Móvil 3")
    shift = build.turno(on, T0, horas=8)
    leave = build.licencia(off, T0 + timedelta(days=2), dias=2)
    tarea = _scheduled(build, sup, T0 + H, codigo="SEMANA-1")
    headers = build.headers(sup)
    assert _assign(client, headers, tarea.id, on.id).status_code == 200
    assert _assign(client, headers, _scheduled(build, sup, T0 + 10 * H).id, off.id).status_code == 200
    week = client.get("/api/v1/planificacion/semana?unidad=M%C3%B3vil%209&semana=2027-04-07", headers=headers)
    assert week.status_code == 200
    data = week.get_json()
    assert data["desde"] == "2027-04-05T00:00:00+02:00" and data["zona_horaria"] == "Europe/Madrid"
    assert [e["id"] for e in data["efectivos"]] == sorted([on.id, off.id], key=lambda i: {on.id: on.nombre, off.id: off.nombre}[i])
    assert [t["id"] for t in data["turnos"]] == [shift.id] and [lic["id"] for lic in data["licencias"]] == [leave.id]
    flags = {r["efectivo_id"]: r["fuera_de_turno"] for r in data["reservas"]}
    assert flags == {on.id: False, off.id: True}
    assert client.get("/api/v1/planificacion/semana?semana=2027-02-30", headers=headers).status_code == 422
