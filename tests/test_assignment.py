"""Assignment of efectivos to tareas: availability, one active tarea per efectivo, release."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient

from tests.builders import Builders


def test_assigning_a_busy_efectivo_is_409_naming_the_holding_tarea(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    first, second = build.tarea(sup, codigo="HOLD-1"), build.tarea(sup)
    headers = build.headers(sup)
    assert client.post(f"/api/v1/tasks/{first.id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers).status_code == 200
    clash = client.post(f"/api/v1/tasks/{second.id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers)
    assert clash.status_code == 409
    body = clash.get_json()
    assert body["efectivo_id"] == efectivo.id and body["tarea_id"] == first.id and "HOLD-1" in body["detail"]
    assert body["mensaje"] == f"{efectivo.codigo_interno} ya tiene la tarea HOLD-1 en ese horario."  # what the pages show


def test_unavailable_or_unknown_efectivos_cannot_be_assigned_and_nothing_is_half_written(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    ok, off = build.efectivo(), build.efectivo(estado_disponibilidad="fuera_servicio")
    tarea = build.tarea(sup)
    headers = build.headers(sup)
    response = client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [ok.id, off.id]}, headers=headers)
    assert response.status_code == 409 and response.get_json()["efectivo_id"] == off.id
    assert response.get_json()["mensaje"] == f"{off.codigo_interno} no está disponible (fuera servicio)."
    assert client.get(f"/api/v1/tasks/{tarea.id}", headers=headers).get_json()["efectivos"] == []
    unknown = client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [ok.id, 99999]}, headers=headers)
    assert unknown.status_code == 422
    assert client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": []}, headers=headers).status_code == 422
    assert client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": ["uno"]}, headers=headers).status_code == 422


def test_unassign_releases_a_working_efectivo(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo(estado_disponibilidad="en_tarea")
    tarea = build.tarea(sup, estado="en_curso", inicio_real=datetime.now(UTC))
    build.asignacion(tarea, efectivo)
    headers = build.headers(sup)
    response = client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", headers=headers)
    assert response.status_code == 200 and response.get_json()["efectivos"] == []
    assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers).get_json()["estado_disponibilidad"] == "disponible"
    assert client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", headers=headers).status_code == 404
