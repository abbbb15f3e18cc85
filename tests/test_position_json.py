"""A position report answered by its one statement (``efectivos.report_position``) equals what the ORM path
(``set_ubicacion`` and EfectivoOut) answers and records, on efectivos and positions of every shape."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from gad.models import Efectivo, utcnow
from gad.schemas.efectivos import EfectivoOut
from gad.schemas.events import EfectivoLocationUpdate
from gad.services.efectivos import efectivo_payload
from gad.vocab import Disponibilidad
from tests.builders import Builders
from tests.helpers import all_events
from tests.test_tarea_json import FLOATS, LONS, TEXTS, _values

NAMES = [text for text in TEXTS if text and len(text) >= 1]


def _cut(text: str | None, length: int) -> str | None:
    return text[:length] if text is not None else None


def _as_the_orm_answers(app: Flask, efectivo_id: int) -> tuple[str, dict[str, Any]]:
    """The efectivo as the ORM path answers it now (EfectivoOut JSON) and the event it records for its position."""
    with app.app_context():
        efectivo = db.session.get(Efectivo, efectivo_id)
        assert efectivo is not None
        event = EfectivoLocationUpdate.model_validate(efectivo_payload(efectivo))
        return EfectivoOut.model_validate(efectivo).model_dump_json(), event.to_json()


@pytest.mark.parametrize("case", range(len(FLOATS)))
def test_a_position_answered_by_its_statement_equals_the_orm_path(app: Flask, client: FlaskClient, build: Builders, case: int) -> None:
    supervisor = build.usuario(2)
    linked = case % 2 == 0
    name = NAMES[case % len(NAMES)]
    efectivo = build.efectivo(
        usuario_id=build.usuario(1).id if linked else None,
        nombre=name[:200] if name.strip() else "Agente",
        rango=_cut(TEXTS[case % len(TEXTS)], 50),
        unidad=_cut(TEXTS[(case + 1) % len(TEXTS)], 100),
        especialidad=_cut(TEXTS[(case + 2) % len(TEXTS)], 100),
        estado_disponibilidad=list(Disponibilidad)[case % len(Disponibilidad)].value,
        extra=None if case % 3 else {"radio": name, "n": case, "nested": [1.5, None, True]},
    )
    if case % 3 == 1:
        build.turno(efectivo, utcnow() - timedelta(hours=1))  # en servicio
    elif case % 3 == 2:
        build.licencia(efectivo, utcnow() - timedelta(hours=1))
    body: dict[str, Any] = {"lat": FLOATS[case], "lng": LONS[case]}
    if case % 4 == 3:
        body["registrado_en"] = (utcnow() - timedelta(minutes=5)).isoformat()
    moved = client.put(f"/api/v1/efectivos/{efectivo.id}/ubicacion", json=body, headers=build.headers(supervisor))
    assert moved.status_code == 200, moved.get_json()
    document, event = _as_the_orm_answers(app, efectivo.id)
    assert _values(moved.data) == _values(document)
    assert moved.headers["ETag"] == f'"{json.loads(document)["version"]}"'
    recorded = all_events(app)[-1]
    assert recorded.event_type == "efectivo_location_update" and recorded.actor_id == supervisor.id
    assert _values(json.dumps(recorded.payload)) == _values(json.dumps(event))


def test_what_the_statement_does_not_write_is_decided_as_before(app: Flask, client: FlaskClient, build: Builders) -> None:
    """An older fix is acknowledged with the efectivo as it is; someone else's efectivo is 403 to an officer; an
    unknown one 404; a fix from the future 422: each by set_ubicacion, with nothing written or recorded."""
    officer = build.usuario(1)
    mine, other = build.efectivo(usuario_id=officer.id), build.efectivo()
    headers = build.headers(officer)
    path = f"/api/v1/efectivos/{mine.id}/ubicacion"
    assert client.put(path, json={"lat": 10.0, "lng": 10.0}, headers=headers).status_code == 200
    older = client.put(path, json={"lat": 20.0, "lng": 20.0, "registrado_en": (utcnow() - timedelta(hours=1)).isoformat()}, headers=headers)
    assert older.status_code == 200 and older.get_json()["lat"] == 10.0
    assert _values(older.data) == _values(_as_the_orm_answers(app, mine.id)[0])
    assert client.put(f"/api/v1/efectivos/{other.id}/ubicacion", json={"lat": 1.0, "lng": 1.0}, headers=headers).status_code == 403
    for unknown in (987654, 2**31, 10**23):  # beyond the id column's integer: still no such efectivo
        assert client.put(f"/api/v1/efectivos/{unknown}/ubicacion", json={"lat": 1.0, "lng": 1.0}, headers=headers).status_code == 404
    future = client.put(path, json={"lat": 1.0, "lng": 1.0, "registrado_en": (utcnow() + timedelta(hours=1)).isoformat()}, headers=headers)
    assert future.status_code == 422
    assert [event.event_type for event in all_events(app)].count("efectivo_location_update") == 1


def test_a_deactivated_efectivos_position_is_refused_as_its_availability_is(app: Flask, client: FlaskClient, build: Builders) -> None:
    """Dado de baja, an efectivo's availability and turnos were refused (409), but a phone still reporting had its
    position recorded and announced: where someone no longer in service goes."""
    officer, sup = build.usuario(1), build.usuario(2)
    mine = build.efectivo(usuario_id=officer.id)
    path = f"/api/v1/efectivos/{mine.id}/ubicacion"
    assert client.put(path, json={"lat": 10.0, "lng": 10.0}, headers=build.headers(officer)).status_code == 200
    assert client.delete(f"/api/v1/efectivos/{mine.id}", headers=build.headers(sup)).status_code == 204
    for who in (officer, sup):
        refused = client.put(path, json={"lat": 11.0, "lng": 11.0}, headers=build.headers(who))
        assert refused.status_code == 409 and refused.mimetype == "application/problem+json"
        assert refused.get_json()["mensaje"] == "El efectivo está dado de baja."
    with app.app_context():
        assert db.session.get(Efectivo, mine.id).lat == 10.0
    assert [event.event_type for event in all_events(app)].count("efectivo_location_update") == 1
