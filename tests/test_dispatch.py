"""Dispatch: nearest efectivos, and emergencies (never dropped, never double-booked)."""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from gad.models import Asignacion
from tests.builders import Builders
from tests.conftest import LiveServer
from tests.helpers import all_events

SOL = (40.4169, -3.7035)


def haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


def _placed(build: Builders, dlat: float, dlon: float = 0.0, **overrides: object):
    return build.efectivo(lat=SOL[0] + dlat, lon=SOL[1] + dlon, posicion_en=datetime.now(UTC), **overrides)


def test_nearest_are_sorted_by_great_circle_distance_within_radius(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    far = _placed(build, 0.03)  # ~3.3 km
    near = _placed(build, 0.001)  # ~110 m
    mid = _placed(build, 0.0, 0.02)  # ~1.7 km
    _placed(build, 0.2)  # ~22 km: outside the default 5 km
    response = client.get(f"/api/v1/efectivos/cercanos?lat={SOL[0]}&lng={SOL[1]}&limit=10", headers=build.headers(sup))
    assert response.status_code == 200
    items = response.get_json()
    assert [i["efectivo"]["id"] for i in items] == [near.id, mid.id, far.id]
    for item, efectivo in zip(items, (near, mid, far), strict=True):
        assert item["distancia_m"] == pytest.approx(haversine(SOL[0], SOL[1], efectivo.lat, efectivo.lon), abs=0.5)
        assert 0 <= item["posicion_edad_s"] < 60


def test_nearest_honours_limit_availability_and_position_age(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    free = _placed(build, 0.001)
    busy = _placed(build, 0.0005, estado_disponibilidad="no_disponible")
    stale = build.efectivo(lat=SOL[0], lon=SOL[1], posicion_en=datetime.now(UTC) - timedelta(hours=2))
    headers = build.headers(sup)
    base = f"/api/v1/efectivos/cercanos?lat={SOL[0]}&lng={SOL[1]}"
    assert [i["efectivo"]["id"] for i in client.get(base, headers=headers).get_json()] == [free.id]
    with_busy = [i["efectivo"]["id"] for i in client.get(base + "&solo_disponibles=false", headers=headers).get_json()]
    assert with_busy == [busy.id, free.id]
    with_stale = [i["efectivo"]["id"] for i in client.get(base + "&incluir_antiguas=true", headers=headers).get_json()]
    assert with_stale == [stale.id, free.id]
    assert len(client.get(base + "&limit=1&solo_disponibles=false", headers=headers).get_json()) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("lat=91&lng=0", "query.lat"),
        ("lat=0&lng=-181", "query.lng"),
        ("lat=0&lng=0&radio_m=0", "query.radio_m"),
        ("lat=0&lng=0&radio_m=100001", "query.radio_m"),
        ("lat=0&lng=0&limit=-1", "query.limit"),
        ("lat=norte&lng=0", "query.lat"),
        ("lng=0", "query.lat"),
    ],
)
def test_nearest_rejects_bad_input_with_field_paths(client: FlaskClient, build: Builders, query: str, field: str) -> None:
    response = client.get(f"/api/v1/efectivos/cercanos?{query}", headers=build.headers(build.usuario(2)))
    assert response.status_code == 422
    assert field in {e["field"] for e in response.get_json()["errors"]}


def test_emergency_creates_running_tarea_and_sends_the_nearest_available(app: Flask, client: FlaskClient, build: Builders) -> None:
    user = build.usuario(1)
    nearest, second = _placed(build, 0.001), _placed(build, 0.002)
    _placed(build, 0.0001, estado_disponibilidad="fuera_servicio")
    _placed(build, 0.01)
    body = {"lat": SOL[0], "lng": SOL[1], "descripcion": "Incendio en portal", "efectivos": 2}
    response = client.post("/api/v1/tasks/emergency", json=body, headers=build.headers(user))
    assert response.status_code == 201
    data = response.get_json()
    tarea = data["tarea"]
    assert re.fullmatch(r"EMG-\d{8}-0001", tarea["codigo"]) and tarea["estado"] == "en_curso" and tarea["es_emergencia"]
    assert tarea["tipo"] == "emergencia" and tarea["prioridad"] == 5 and tarea["creado_por_usuario_id"] == user.id
    assert [a["efectivo_id"] for a in data["asignados"]] == [nearest.id, second.id] and data["sin_asignar"] is False
    sup = build.usuario(2)
    for efectivo in (nearest, second):
        assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=build.headers(sup)).get_json()["estado_disponibilidad"] == "en_tarea"
    types = [e.event_type for e in all_events(app)]
    assert types[0] == "emergency_created" and "task_assigned" in types and types.count("efectivo_status_changed") == 2
    second_one = client.post("/api/v1/tasks/emergency", json={"lat": 0, "lng": 0}, headers=build.headers(user)).get_json()
    assert second_one["tarea"]["codigo"].endswith("-0002")


def test_emergency_with_nobody_available_is_still_created_unassigned(app: Flask, client: FlaskClient, build: Builders) -> None:
    user = build.usuario(1)
    response = client.post("/api/v1/tasks/emergency", json={"lat": 10.0, "lng": 10.0}, headers=build.headers(user))
    assert response.status_code == 201
    data = response.get_json()
    assert data["asignados"] == [] and data["sin_asignar"] is True and data["tarea"]["estado"] == "en_curso"
    resumen = client.get("/api/v1/dashboard/resumen", headers=build.headers(build.usuario(2))).get_json()
    assert resumen["emergencias_activas"] == 1 and resumen["emergencias_sin_asignar"] == 1


def test_an_sos_without_a_position_is_raised_at_the_last_known_one_or_without_one(app: Flask, client: FlaskClient, build: Builders) -> None:
    """A phone with no fix sent nothing ("No se conoce su posición: llame a la central") though the central knew where
    the officer last was. Without lat/lng the emergency is raised at the caller's efectivo's last position (said in
    ubicacion_descripcion), and with none known it is raised without a location, nobody sent, the reason given."""
    officer, supervisor = build.usuario(1), build.usuario(2)
    build.efectivo(usuario_id=officer.id, codigo_interno="EF-SOS", lat=SOL[0], lon=SOL[1], posicion_en=datetime.now(UTC) - timedelta(minutes=4))
    nearest = _placed(build, 0.001)
    raised = client.post("/api/v1/tasks/emergency", json={"descripcion": "SOS desde Mi servicio"}, headers=build.headers(officer))
    assert raised.status_code == 201, raised.get_json()
    data = raised.get_json()
    assert (data["tarea"]["ubicacion_lat"], data["tarea"]["ubicacion_lng"]) == SOL
    assert data["tarea"]["ubicacion_descripcion"].startswith("Última posición conocida de EF-SOS (")
    assert [a["efectivo_id"] for a in data["asignados"]] == [nearest.id]

    # An efectivo whose phone never sent a position: raised without one, nobody sent, the supervisors told.
    nowhere = build.usuario(1)
    build.efectivo(usuario_id=nowhere.id)
    unplaced = client.post("/api/v1/tasks/emergency", json={}, headers=build.headers(nowhere))
    assert unplaced.status_code == 201, unplaced.get_json()
    data = unplaced.get_json()
    assert data["tarea"]["ubicacion_lat"] is None and data["tarea"]["estado"] == "en_curso"
    assert data["asignados"] == [] and data["sin_asignar"] is True and "No se conoce la posición" in data["motivo_sin_asignar"]
    with app.app_context():
        told = db.session.scalars(db.text("SELECT usuario_id FROM notificaciones WHERE tarea_id = :id"), {"id": data["tarea"]["id"]}).all()
    assert told == [supervisor.id], "the supervisors on duty are told of it as of any emergency"

    # A last position older than POSICION_MAX_EDAD_S is shown, and nobody is sent there unconfirmed.
    stale = build.usuario(1)
    build.efectivo(usuario_id=stale.id, codigo_interno="EF-VIEJA", lat=SOL[0], lon=SOL[1], posicion_en=datetime.now(UTC) - timedelta(days=3))
    old = client.post("/api/v1/tasks/emergency", json={}, headers=build.headers(stale)).get_json()
    assert (old["tarea"]["ubicacion_lat"], old["tarea"]["ubicacion_lng"]) == SOL and old["asignados"] == []
    assert "no se envía a nadie allí sin confirmarla" in old["motivo_sin_asignar"] and "hace 4320 min" in old["tarea"]["ubicacion_descripcion"]

    # Anyone not an efectivo (an operator, an integration) still says where: a forgotten position is a 422, not an
    # emergency nobody can find.
    forgot = client.post("/api/v1/tasks/emergency", json={"descripcion": "Sin coordenadas"}, headers=build.headers(supervisor))
    assert forgot.status_code == 422 and {e["field"] for e in forgot.get_json()["errors"]} == {"body.lat", "body.lng"}


def test_an_efectivos_emergency_sends_at_most_the_configured_few_and_a_supervisors_more(app: Flask, client: FlaskClient, build: Builders) -> None:
    """A nivel-1 account may raise an SOS, not pull the whole force onto it: asking for more than
    ``EMERGENCIA_EFECTIVOS_AGENTE`` (2) is 403 and nothing is created or assigned; a supervisor may ask for more."""
    officer, supervisor = build.usuario(1), build.usuario(2)
    placed = [_placed(build, 0.001 * n) for n in range(1, 6)]
    too_many = client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1], "efectivos": 3}, headers=build.headers(officer))
    assert too_many.status_code == 403 and too_many.mimetype == "application/problem+json"
    assert "at most 2" in too_many.get_json()["detail"]
    assert [event.event_type for event in all_events(app)] == ["permission_denied"]  # audited, nothing raised
    with app.app_context():
        assert db.session.query(Asignacion).count() == 0
    allowed = client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1], "efectivos": 2}, headers=build.headers(officer))
    assert allowed.status_code == 201 and [a["efectivo_id"] for a in allowed.get_json()["asignados"]] == [placed[0].id, placed[1].id]
    more = client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1], "efectivos": 3}, headers=build.headers(supervisor))
    assert more.status_code == 201 and [a["efectivo_id"] for a in more.get_json()["asignados"]] == [p.id for p in placed[2:]]


def test_emergency_honours_idempotency_key(app: Flask, client: FlaskClient, build: Builders) -> None:
    user = build.usuario(1)
    _placed(build, 0.001)
    headers = build.headers(user, **{"Idempotency-Key": "panic-button-1"})
    first = client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1]}, headers=headers)
    again = client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1]}, headers=headers)
    assert first.status_code == again.status_code == 201 and first.get_json() == again.get_json()
    assert len([e for e in all_events(app) if e.event_type == "emergency_created"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({"lat": 91, "lng": 0}, "body.lat"), ({"lat": 0}, "body.lng"), ({"lng": 0}, "body.lat"), ({"lat": 0, "lng": 0, "efectivos": 0}, "body.efectivos")],
)
def test_emergency_rejects_bad_input(client: FlaskClient, build: Builders, body: dict, field: str) -> None:
    response = client.post("/api/v1/tasks/emergency", json=body, headers=build.headers(build.usuario(1)))
    assert response.status_code == 422 and field in {e["field"] for e in response.get_json()["errors"]}


@pytest.mark.slow
def test_simultaneous_emergencies_never_share_an_efectivo(app: Flask, build: Builders, live_server: LiveServer) -> None:
    user = build.usuario(1)
    pool = [_placed(build, 0.0005 * (i + 1)) for i in range(6)]
    headers = build.headers(user)
    barrier = threading.Barrier(10)

    def raise_one(i: int) -> dict:
        barrier.wait()
        response = live_server.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1]}, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()

    with ThreadPoolExecutor(10) as executor:
        results = list(executor.map(raise_one, range(10)))
    assigned = [a["efectivo_id"] for r in results for a in r["asignados"]]
    assert len(assigned) == len(set(assigned)) == len(pool)  # every free efectivo used once, none twice
    assert Counter(r["sin_asignar"] for r in results) == {False: 6, True: 4}
    assert len({r["tarea"]["codigo"] for r in results}) == 10
    with app.app_context():
        assert db.session.query(Asignacion).filter(Asignacion.liberado_en.is_(None)).count() == 6


def test_an_efectivo_on_licencia_now_is_neither_dispatched_nor_assigned_open_ended(client: FlaskClient, build: Builders) -> None:
    """Leave is not negotiable: it was enforced for booked windows only, so an emergency or an unscheduled tarea
    still took an efectivo whose licencia covered the moment (reviewer's finding)."""
    sup = build.usuario(2)
    headers = build.headers(sup)
    on_leave, next_one = _placed(build, 0.0001), _placed(build, 0.002)
    now = datetime.now(UTC)
    licencia = {
        "efectivo_id": on_leave.id,
        "tipo": "enfermedad",
        "inicio": (now - timedelta(hours=1)).isoformat(),
        "fin": (now + timedelta(days=2)).isoformat(),
    }
    assert client.post("/api/v1/licencias", json=licencia, headers=headers).status_code == 201

    near = client.get(f"/api/v1/efectivos/cercanos?lat={SOL[0]}&lng={SOL[1]}&limit=10", headers=headers).get_json()
    assert [item["efectivo"]["id"] for item in near] == [next_one.id]  # available ones only, by default
    emergency = client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1], "efectivos": 1}, headers=headers).get_json()
    assert [a["efectivo_id"] for a in emergency["asignados"]] == [next_one.id]

    open_ended = client.post("/api/v1/tasks", json={"codigo": "SIN-HORA-1", "titulo": "Sin horario", "tipo": "patrullaje"}, headers=headers).get_json()
    refused = client.post(f"/api/v1/tasks/{open_ended['id']}/efectivos", json={"efectivo_ids": [on_leave.id]}, headers=headers)
    assert refused.status_code == 409 and refused.mimetype == "application/problem+json"
    assert "licencia" in refused.get_json()["detail"] and refused.get_json()["efectivo_id"] == on_leave.id
