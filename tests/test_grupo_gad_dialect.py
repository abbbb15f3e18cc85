"""The old GRUPO_GAD clients' dialect: trailing slashes, ``skip``, websocket ``events`` and ``pong`` with data."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from gad.policy import TOPIC_MIN_NIVEL
from tests.builders import Builders
from tests.conftest import LiveServer
from tests.wsclient import WsClient


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks",
        "/api/v1/users",
        "/api/v1/efectivos",
        "/api/v1/eventos",
        "/api/v1/turnos",
        "/api/v1/licencias",
        "/api/v1/notificaciones",
        "/api/v1/alertas",
    ],
)
def test_collection_with_trailing_slash_answers_like_the_canonical_path(client: FlaskClient, build: Builders, path: str) -> None:
    admin = build.usuario(3)
    build.tarea(admin)
    build.efectivo()
    headers = build.headers(admin)
    canonical = client.get(path, headers=headers)
    slashed = client.get(path + "/", headers=headers)
    assert canonical.status_code == 200
    assert slashed.status_code == 200 and "Location" not in slashed.headers  # answered, not redirected
    assert slashed.get_json() == canonical.get_json()


def test_post_to_collection_with_trailing_slash_creates_without_redirect(client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    created = client.post("/api/v1/tasks/", json={"codigo": "SLASH-01", "titulo": "Creada con barra final", "tipo": "patrullaje"}, headers=build.headers(admin))
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["codigo"] == "SLASH-01"
    user = client.post(
        "/api/v1/users/",
        json={"email": "barra@gad.test", "password": "una-clave-larga-1", "dni": "55555555Z", "nombre": "Ana", "apellido": "Barra"},
        headers=build.headers(admin),
    )
    assert user.status_code == 201, user.get_json()
    alerta = client.post("/api/v1/alertas/", json={"tipo": "codigo_rojo", "texto": "Alerta con barra final", "destino": "todos"}, headers=build.headers(admin))
    assert alerta.status_code == 201, alerta.get_json()
    # Unauthenticated, the slashed path fails exactly like the canonical one (401, not a redirect).
    assert client.get("/api/v1/tasks/").status_code == client.get("/api/v1/tasks").status_code == 401


def test_skip_is_an_alias_of_offset(client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    for _ in range(3):
        build.tarea(admin)
    headers = build.headers(admin)
    by_offset = client.get("/api/v1/tasks?limit=1&offset=2", headers=headers).get_json()
    by_skip = client.get("/api/v1/tasks?limit=1&skip=2", headers=headers).get_json()
    assert by_skip == by_offset and by_skip["offset"] == 2 and len(by_skip["items"]) == 1
    assert client.get("/api/v1/users/?skip=1&offset=1", headers=headers).status_code == 200
    for bad in ("skip=-1", "skip=uno", "skip=1&offset=2"):
        response = client.get(f"/api/v1/tasks?{bad}", headers=headers)
        assert response.status_code == 422, bad
        assert response.mimetype == "application/problem+json"


def test_websocket_subscribe_by_event_names_and_pong_with_data(build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    client = WsClient(live_server.url, build.token(sup))
    assert client.recv()["event_type"] == "connection_ack"
    # Start from nothing: every topic a supervisor may see (the list grows as GAD does).
    client.send("unsubscribe", topics=sorted(topic for topic, nivel in TOPIC_MIN_NIVEL.items() if nivel <= 2))
    assert client.recv()["data"]["topics"] == []
    # The old clients' pong carries data: accepted silently (no error frame).
    client.send("pong", timestamp="2026-11-29T23:00:00Z", connection_id="abc")
    client.send("subscribe", events=["task_created", "efectivo_status_changed"])
    frame = client.recv()
    assert frame["event_type"] == "subscriptions", frame
    assert frame["data"]["topics"] == ["efectivos", "emergencias", "tareas"]
    created = live_server.post("/api/v1/tasks", json={"codigo": "WS-OLD-1", "titulo": "Evento por nombre", "tipo": "patrullaje"}, headers=build.headers(sup))
    assert created.status_code == 201
    assert client.events(1)[0]["event_type"] == "task_created"
    # Unknown names and forbidden topics answer an error frame; the socket stays open.
    client.send("subscribe", events=["task_exploded", "user_created"])
    error = client.recv()
    assert error["event_type"] == "error" and error["data"]["unknown"] == ["task_exploded"] and error["data"]["forbidden"] == ["usuarios"]
    assert client.recv()["data"]["topics"] == ["efectivos", "emergencias", "tareas"]  # unchanged
    client.send("subscribe", nothing=True)
    assert client.recv()["event_type"] == "error"
    client.send("unsubscribe", events=["task_updated"])
    assert client.recv()["data"]["topics"] == ["efectivos"]
    client.close()
