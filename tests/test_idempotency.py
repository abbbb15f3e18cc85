"""Idempotency-Key: replayed responses, one effect, malformed keys, retries after failure."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from gad.models import HistorialEstado, Tarea
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
