"""Availability follows assignments: en_tarea while on any running tarea, and a hand-set no_disponible stays."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from gad.extensions import db
from gad.models import Usuario
from tests.builders import Builders
from tests.conftest import LiveServer
from tests.helpers import all_events, tarea_body, transition

# Where the officer stands and emergencies are raised (the reviewer's coordinates).
POS = {"lat": 50.0, "lng": 5.0}
# Bookings far from now: a booked window that is not running now does not keep anyone from an emergency.
T0 = datetime(2027, 4, 5, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


class Desk:
    """A supervisor (and an administrador) doing through the API what the operations desk does."""

    def __init__(self, client: FlaskClient, build: Builders) -> None:
        self.client = client
        self.sup = build.headers(build.usuario(2))
        self.admin = build.headers(build.usuario(3))

    def efectivo(self, codigo: str, usuario: Usuario | None = None) -> int:
        body = {"codigo_interno": codigo, "nombre": f"Agente {codigo}"} | ({"usuario_id": usuario.id} if usuario else {})
        created = self.client.post("/api/v1/efectivos", json=body, headers=self.sup)
        assert created.status_code == 201, created.get_json()
        efectivo_id = int(created.get_json()["id"])
        assert self.client.put(f"/api/v1/efectivos/{efectivo_id}/ubicacion", json=POS, headers=self.sup).status_code == 200
        return efectivo_id

    def booked(self, codigo: str, start: datetime, efectivo_id: int) -> int:
        """A tarea scheduled [start, start + 2 h) with ``efectivo_id`` assigned (a booking)."""
        body = tarea_body(codigo, inicio_programado=start.isoformat(), fin_programado=(start + 2 * H).isoformat())
        created = self.client.post("/api/v1/tasks", json=body, headers=self.sup)
        assert created.status_code == 201, created.get_json()
        tarea_id = int(created.get_json()["id"])
        assert self.assign(tarea_id, efectivo_id).status_code == 200
        return tarea_id

    def assign(self, tarea_id: int, efectivo_id: int) -> Any:
        return self.client.post(f"/api/v1/tasks/{tarea_id}/efectivos", json={"efectivo_ids": [efectivo_id]}, headers=self.sup)

    def move(self, tarea_id: int, estado: str) -> None:
        moved = transition(self.client, self.sup, tarea_id, estado)
        assert moved.status_code == 200, moved.get_json()

    def estado(self, efectivo_id: int) -> str:
        return str(self.client.get(f"/api/v1/efectivos/{efectivo_id}", headers=self.sup).get_json()["estado_disponibilidad"])

    def tarea(self, tarea_id: int) -> dict[str, Any]:
        return dict(self.client.get(f"/api/v1/tasks/{tarea_id}", headers=self.sup).get_json())

    def emergency(self) -> dict[str, Any]:
        raised = self.client.post("/api/v1/tasks/emergency", json=POS, headers=self.sup)
        assert raised.status_code == 201, raised.get_json()
        return dict(raised.get_json())

    def cercanos(self, **query: str) -> dict[int, str]:
        params = "&".join(f"{k}={v}" for k, v in ({"lat": "50", "lng": "5"} | query).items())
        found = self.client.get(f"/api/v1/efectivos/cercanos?{params}", headers=self.sup)
        assert found.status_code == 200
        return {item["efectivo"]["id"]: item["efectivo"]["estado_disponibilidad"] for item in found.get_json()}

    def set_disponibilidad(self, efectivo_id: int, estado: str, motivo: str | None = None) -> Any:
        body = {"estado": estado} | ({"motivo": motivo} if motivo else {})
        return self.client.post(f"/api/v1/efectivos/{efectivo_id}/disponibilidad", json=body, headers=self.sup)


@pytest.fixture
def desk(client: FlaskClient, build: Builders) -> Desk:
    return Desk(client, build)


def _status_changes(app: Flask, efectivo_id: int) -> list[tuple[str, str]]:
    """The efectivo_status_changed events of one efectivo, as (from, to), oldest first."""
    return [
        (e.payload["from"], e.payload["to"])
        for e in all_events(app)
        if e.event_type == "efectivo_status_changed" and e.entity_type == "efectivo" and e.entity_id == efectivo_id
    ]


def test_finishing_one_of_two_running_tareas_leaves_the_officer_en_tarea_and_out_of_dispatch(app: Flask, desk: Desk) -> None:
    """The reviewer's first scenario: two bookings started, one finished; the other still holds the officer."""
    officer = desk.efectivo("AG-27")
    a = desk.booked("TAREA-A", T0, officer)
    b = desk.booked("TAREA-B", T0 + 6 * H, officer)
    desk.move(a, "en_curso")
    desk.move(b, "en_curso")
    desk.move(a, "finalizada")

    assert desk.estado(officer) == "en_tarea"
    still = desk.tarea(b)
    assert still["estado"] == "en_curso" and [e["efectivo_id"] for e in still["efectivos"]] == [officer]
    emergency = desk.emergency()
    assert emergency["asignados"] == [] and emergency["sin_asignar"] is True
    assert officer not in desk.cercanos()
    assert desk.cercanos(solo_disponibles="false") == {officer: "en_tarea"}
    # Nothing changed for the officer when A ended: no event says so.
    assert _status_changes(app, officer) == [("disponible", "en_tarea")]

    desk.move(b, "finalizada")  # the last running tarea releases them, and says so once
    assert desk.estado(officer) == "disponible"
    assert _status_changes(app, officer) == [("disponible", "en_tarea"), ("en_tarea", "disponible")]
    assert [a["efectivo_id"] for a in desk.emergency()["asignados"]] == [officer]


def test_an_emergency_does_not_take_an_officer_whose_booking_started_while_on_an_earlier_emergency(desk: Desk) -> None:
    """The normal way onto two running tareas: an emergency takes someone whose booking is later, and then the
    booking is started. Finishing the emergency leaves them on the booking, and the next emergency finds nobody."""
    officer = desk.efectivo("AG-31")
    booking = desk.booked("RESERVA-1", T0, officer)
    first = desk.emergency()
    assert [a["efectivo_id"] for a in first["asignados"]] == [officer]
    desk.move(booking, "en_curso")
    desk.move(first["tarea"]["id"], "finalizada")

    assert desk.estado(officer) == "en_tarea"
    second = desk.emergency()
    assert second["asignados"] == [] and second["sin_asignar"] is True


def _cancel(desk: Desk, tarea_id: int, officer: int) -> None:
    desk.move(tarea_id, "cancelada")


def _delete(desk: Desk, tarea_id: int, officer: int) -> None:
    assert desk.client.delete(f"/api/v1/tasks/{tarea_id}", headers=desk.admin).status_code == 204


def _unassign(desk: Desk, tarea_id: int, officer: int) -> None:
    assert desk.client.delete(f"/api/v1/tasks/{tarea_id}/efectivos/{officer}", headers=desk.sup).status_code == 200


@pytest.mark.parametrize("end_a", [_cancel, _delete, _unassign], ids=["cancel", "delete", "unassign"])
def test_leaving_one_running_tarea_by_any_path_keeps_the_officer_on_the_other(desk: Desk, end_a: Callable[[Desk, int, int], None]) -> None:
    officer = desk.efectivo("AG-40")
    a = desk.booked("TAREA-A", T0, officer)
    b = desk.booked("TAREA-B", T0 + 6 * H, officer)
    desk.move(a, "en_curso")
    desk.move(b, "en_curso")
    end_a(desk, a, officer)

    assert desk.estado(officer) == "en_tarea"
    assert desk.emergency()["asignados"] == []
    end_a(desk, b, officer)  # leaving the last one by the same path frees them
    assert desk.estado(officer) == "disponible"


def test_a_no_puedo_to_one_running_tarea_keeps_the_officer_on_the_other(client: FlaskClient, build: Builders, desk: Desk) -> None:
    usuario = build.usuario(1)
    officer = desk.efectivo("AG-41", usuario)
    a = desk.booked("TAREA-A", T0, officer)
    b = desk.booked("TAREA-B", T0 + 6 * H, officer)
    desk.move(a, "en_curso")
    desk.move(b, "en_curso")
    mine = build.headers(usuario)
    asked = client.get(f"/api/v1/notificaciones?pendientes=true&tarea_id={a}", headers=mine).get_json()["items"]
    assert len(asked) == 1
    declined = client.post(f"/api/v1/notificaciones/{asked[0]['id']}/ack", json={"respuesta": "no_puedo", "motivo": "Sigo en B"}, headers=mine)
    assert declined.status_code == 200, declined.get_json()

    assert desk.tarea(a)["efectivos"] == [] and desk.estado(officer) == "en_tarea"
    assert desk.emergency()["asignados"] == []


def test_a_paused_tarea_still_holds_the_officer_when_the_other_one_ends(desk: Desk) -> None:
    officer = desk.efectivo("AG-42")
    a = desk.booked("TAREA-A", T0, officer)
    b = desk.booked("TAREA-B", T0 + 6 * H, officer)
    desk.move(a, "en_curso")
    desk.move(b, "en_curso")
    desk.move(b, "pausada")
    desk.move(a, "finalizada")

    assert desk.estado(officer) == "en_tarea"
    assert desk.emergency()["asignados"] == []
    desk.move(b, "cancelada")
    assert desk.estado(officer) == "disponible"


@pytest.mark.parametrize("end", ["cancelada", "finalizada"])
def test_a_hand_set_no_disponible_survives_a_booked_tarea_starting_and_ending(app: Flask, desk: Desk, end: str) -> None:
    """The reviewer's second scenario: booked, then "baja médica" by hand, then the tarea starts and ends."""
    officer = desk.efectivo("AG-08")
    tarea = desk.booked("RESERVA-8", T0, officer)
    assert desk.set_disponibilidad(officer, "no_disponible", "baja médica").status_code == 200
    desk.move(tarea, "en_curso")

    assert desk.estado(officer) == "no_disponible"
    assert desk.emergency()["asignados"] == []
    desk.move(tarea, end)
    assert desk.estado(officer) == "no_disponible"
    assert desk.emergency()["asignados"] == []
    assert _status_changes(app, officer) == [("disponible", "no_disponible")]


def test_back_from_no_disponible_onto_a_running_tarea_is_en_tarea_until_it_ends(app: Flask, desk: Desk) -> None:
    """Coming back (disponible, by hand) while a tarea they are on runs puts them en_tarea, never free for dispatch."""
    officer = desk.efectivo("AG-09")
    tarea = desk.booked("RESERVA-9", T0, officer)
    assert desk.set_disponibilidad(officer, "no_disponible", "baja médica").status_code == 200
    desk.move(tarea, "en_curso")
    back = desk.set_disponibilidad(officer, "disponible", "alta")
    assert back.status_code == 200 and back.get_json()["estado_disponibilidad"] == "en_tarea"

    assert desk.emergency()["asignados"] == []
    desk.move(tarea, "finalizada")
    assert desk.estado(officer) == "disponible"
    assert _status_changes(app, officer) == [("disponible", "no_disponible"), ("no_disponible", "en_tarea"), ("en_tarea", "disponible")]


def _waiting_for_locks() -> int:
    with db.engine.connect() as probe:
        return int(probe.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")) or 0)


def _until_waiting(count: int) -> None:
    deadline = time.monotonic() + 20
    while _waiting_for_locks() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _waiting_for_locks() == count


@pytest.mark.slow
def test_two_running_tareas_of_one_officer_ending_at_once_leave_them_disponible(app: Flask, build: Builders, live_server: LiveServer) -> None:
    """Both ends wait for the officer's row; the one served second must read the first as committed (its check
    runs after the lock is granted), or each would believe the other still runs and leave them en_tarea."""
    headers = build.headers(build.usuario(2))
    efectivo = build.efectivo(lat=POS["lat"], lon=POS["lng"], posicion_en=datetime.now(UTC))
    body = tarea_body("RESERVA-X", inicio_programado=T0.isoformat(), fin_programado=(T0 + 2 * H).isoformat())
    booking = live_server.post("/api/v1/tasks", json=body, headers=headers).json()["id"]
    assert live_server.post(f"/api/v1/tasks/{booking}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers).status_code == 200
    emergency = live_server.post("/api/v1/tasks/emergency", json=POS, headers=headers).json()
    assert [a["efectivo_id"] for a in emergency["asignados"]] == [efectivo.id]
    assert live_server.post(f"/api/v1/tasks/{booking}/estado", json={"estado": "en_curso"}, headers=headers).status_code == 200

    def finish(tarea_id: int) -> Any:
        return live_server.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": "finalizada"}, headers=headers)

    with app.app_context(), db.engine.connect() as holder, ThreadPoolExecutor(2) as pool:
        holder.execute(text("SELECT 1 FROM efectivos WHERE id = :id FOR UPDATE"), {"id": efectivo.id})
        first = pool.submit(finish, booking)  # queued first on the officer's row: served first
        _until_waiting(1)
        second = pool.submit(finish, emergency["tarea"]["id"])
        _until_waiting(2)
        holder.rollback()
        assert (first.result().status_code, second.result().status_code) == (200, 200)

    assert live_server.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers).json()["estado_disponibilidad"] == "disponible"
    assert _status_changes(app, efectivo.id) == [("disponible", "en_tarea"), ("en_tarea", "disponible")]
