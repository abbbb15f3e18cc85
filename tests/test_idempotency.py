"""Idempotency-Key: replayed responses, one effect, malformed keys, retries after failure."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from gad.extensions import db
from gad.models import HistorialEstado, Tarea, Usuario
from gad.models.idempotencia import IdempotencyKey
from tests.builders import Builders
from tests.helpers import TAREA, all_events, count_rows, transition


def test_idempotent_create_replays_the_first_response(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    headers = build.headers(sup, **{"Idempotency-Key": "create-1"})
    first = client.post("/api/v1/tasks", json=TAREA, headers=headers)
    second = client.post("/api/v1/tasks", json=TAREA, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json() and second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    assert count_rows(app, Tarea) == 1 and len(all_events(app)) == 1
    changed = client.post("/api/v1/tasks", json=TAREA | {"titulo": "Otro título distinto"}, headers=headers)
    assert changed.status_code == 422


def test_idempotent_transition_has_one_effect(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    tarea = build.tarea(sup)
    headers = build.headers(sup, **{"Idempotency-Key": "start-1"})
    assert transition(client, headers, tarea.id, "en_curso").status_code == 200
    assert transition(client, headers, tarea.id, "en_curso").status_code == 200  # replay, not a 409
    with app.app_context():
        assert db.session.query(HistorialEstado).count() == 1


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_malformed_idempotency_key_is_422(app: Flask, client: FlaskClient, build: Builders, key: str) -> None:
    sup = build.usuario(2)
    response = client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup, **{"Idempotency-Key": key}))
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert count_rows(app, Tarea) == 0


def test_failed_request_with_key_can_be_retried(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    headers = build.headers(sup, **{"Idempotency-Key": "retry-1"})
    assert client.post("/api/v1/tasks", json=TAREA | {"delegado_usuario_id": 4242}, headers=headers).status_code == 422
    assert client.post("/api/v1/tasks", json=TAREA | {"delegado_usuario_id": 4242}, headers=headers).status_code == 422
    assert client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup, **{"Idempotency-Key": "retry-2"})).status_code == 201


def _twice(client: FlaskClient, path: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> tuple[Any, Any]:
    first = client.post(path, json=body, headers=headers)
    second = client.post(path, json=body, headers=headers)
    assert first.status_code < 300, first.get_json()
    assert second.status_code == first.status_code and second.get_json() == first.get_json()
    assert second.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    return first, second


def test_idempotent_usuario_create_makes_one_usuario(app: Flask, client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    body = {"email": "idem@gad.test", "password": "a-long-password-2026", "dni": "55555555K", "nombre": "Idem", "apellido": "Potente"}
    before = count_rows(app, Usuario)
    first, second = _twice(client, "/api/v1/users", build.headers(admin, **{"Idempotency-Key": "usuario-1"}), body)
    assert first.status_code == 201 and second.headers["Location"] == first.headers["Location"]
    assert count_rows(app, Usuario) == before + 1
    assert [e.event_type for e in all_events(app)] == ["user_created"]
    # The body held a password: what is kept of it for the key is keyed with the app's secret, not a plain
    # SHA-256 that whoever reads the table could test guesses against at hash speed.
    raw = json.dumps(body | {"email": "idem2@gad.test", "dni": "55555556Q"}).encode()
    created = client.post("/api/v1/users", data=raw, content_type="application/json", headers=build.headers(admin, **{"Idempotency-Key": "usuario-2"}))
    assert created.status_code == 201, created.get_json()
    with app.app_context():
        kept = db.session.scalar(select(IdempotencyKey.request_hash).where(IdempotencyKey.key == "usuario-2"))
    assert kept != hashlib.sha256(raw).hexdigest()
    assert kept == hmac.new(str(app.config["SECRET_KEY"]).encode(), raw, hashlib.sha256).hexdigest()


def test_idempotent_alert_resend_resends_once(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup, member = build.usuario(2), build.usuario(1)
    headers = build.headers(sup)
    alerta = client.post(
        "/api/v1/alertas", json={"tipo": "aviso", "texto": "Reunión a las 8", "destino": "usuarios", "usuario_ids": [member.id]}, headers=headers
    )
    assert alerta.status_code == 201, alerta.get_json()
    notified = len([e for e in all_events(app) if e.event_type == "notification"])
    first, _ = _twice(client, f"/api/v1/alertas/{alerta.get_json()['id']}/reenviar", headers | {"Idempotency-Key": "reenvio-1"})
    assert first.get_json()["faltan"][0]["reenvios"] == 1
    assert len([e for e in all_events(app) if e.event_type == "notification"]) == notified + 1


def test_reactivar_ack_and_cerrar_replay_a_repeated_key(client: FlaskClient, build: Builders) -> None:
    admin, sup, member = build.usuario(3), build.usuario(2), build.usuario(1)
    inactive = build.usuario(1, activo=False)
    first, _ = _twice(client, f"/api/v1/users/{inactive.id}/reactivar", build.headers(admin, **{"Idempotency-Key": "reactivar-1"}))
    assert first.get_json()["activo"] is True
    notificacion = build.notificacion(member)
    ack = {"respuesta": "acepto"}
    _twice(client, f"/api/v1/notificaciones/{notificacion.id}/ack", build.headers(member, **{"Idempotency-Key": "ack-1"}), ack)
    alerta = build.alerta(sup)
    _twice(client, f"/api/v1/alertas/{alerta.id}/cerrar", build.headers(sup, **{"Idempotency-Key": "cerrar-1"}))
