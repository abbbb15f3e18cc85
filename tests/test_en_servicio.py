"""On duty (en servicio): inside a turno and not on licencia — in the efectivo list, dispatch and notifications."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from gad.models import utcnow
from gad.services import turnos
from gad.vocab import Nivel
from tests.builders import Builders


def test_efectivo_list_shows_and_filters_en_servicio(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    on_duty, off_duty, on_leave = build.efectivo(), build.efectivo(), build.efectivo()
    build.turno(on_duty, utcnow() - timedelta(hours=2))
    build.turno(off_duty, utcnow() + timedelta(hours=2))  # later today: not yet
    build.licencia(on_leave, utcnow() - timedelta(hours=1))
    headers = build.headers(sup)
    listed = {e["id"]: e["en_servicio"] for e in client.get("/api/v1/efectivos", headers=headers).get_json()["items"]}
    assert listed == {on_duty.id: True, off_duty.id: False, on_leave.id: False}
    only = client.get("/api/v1/efectivos?en_servicio=true", headers=headers).get_json()
    assert [e["id"] for e in only["items"]] == [on_duty.id]
    off = client.get("/api/v1/efectivos?en_servicio=false", headers=headers).get_json()
    assert {e["id"] for e in off["items"]} == {off_duty.id, on_leave.id}


def test_a_position_report_answers_en_servicio_as_it_is(app: Flask, client: FlaskClient, build: Builders) -> None:
    """A position's write does not read en_servicio back after its UPDATE (tests/test_round_trips.py): what the
    answer says is still the efectivo's duty, on a turno, on licencia, or neither."""
    sup = build.usuario(2)
    on_duty, on_leave, off_duty = build.efectivo(), build.efectivo(), build.efectivo()
    build.turno(on_duty, utcnow() - timedelta(hours=2))
    build.licencia(on_leave, utcnow() - timedelta(hours=1))
    headers = build.headers(sup)
    for efectivo, expected in ((on_duty, True), (on_leave, False), (off_duty, False)):
        moved = client.put(f"/api/v1/efectivos/{efectivo.id}/ubicacion", json={"lat": 40.4, "lng": -3.7}, headers=headers)
        assert moved.status_code == 200 and moved.get_json()["en_servicio"] is expected


def test_dispatch_prefers_on_duty_and_can_require_it(app: Flask, client: FlaskClient, build: Builders, app_with: Callable[..., Flask]) -> None:
    sup = build.usuario(2)
    now = utcnow()
    near_off = build.efectivo(lat=40.4001, lon=-3.7, posicion_en=now)
    far_on = build.efectivo(lat=40.41, lon=-3.7, posicion_en=now)
    manual = build.efectivo(lat=40.4002, lon=-3.7, posicion_en=now, estado_disponibilidad="no_disponible")
    build.turno(far_on, now - timedelta(hours=1))
    build.turno(manual, now - timedelta(hours=1))  # on duty, but no_disponible by hand wins
    headers = build.headers(sup)
    found = client.get("/api/v1/efectivos/cercanos?lat=40.4&lng=-3.7&radio_m=5000", headers=headers).get_json()
    assert [c["efectivo"]["id"] for c in found] == [far_on.id, near_off.id]
    requiring_duty = app_with(DESPACHO_REQUIERE_SERVICIO=True).test_client()
    required = requiring_duty.get("/api/v1/efectivos/cercanos?lat=40.4&lng=-3.7&radio_m=5000", headers=headers).get_json()
    assert [c["efectivo"]["id"] for c in required] == [far_on.id]
    emergency = requiring_duty.post("/api/v1/tasks/emergency", json={"lat": 40.4, "lng": -3.7, "efectivos": 2}, headers=headers)
    assert emergency.status_code == 201, emergency.get_json()
    assert [a["efectivo_id"] for a in emergency.get_json()["tarea"]["efectivos"]] == [far_on.id]


def test_supervisors_on_duty_are_who_duty_notifications_reach(app: Flask, build: Builders) -> None:
    on, off, field, manual = build.usuario(2), build.usuario(3), build.usuario(1), build.usuario(2)
    for usuario in (on, off, field, manual):
        efectivo = build.efectivo(usuario_id=usuario.id, estado_disponibilidad="no_disponible" if usuario is manual else "disponible")
        if usuario is not off:
            build.turno(efectivo, utcnow() - timedelta(hours=1))
    with app.app_context():
        assert turnos.usuarios_en_servicio(Nivel.SUPERVISOR) == {on.id}
        assert turnos.usuarios_en_servicio(Nivel.EFECTIVO) == {on.id, field.id}
