"""An unknown query parameter is a 422 naming it on every JSON GET endpoint, the lists' answer, never ignored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from tests.builders import Builders
from tests.helpers import PROBLEM

# Static documents: a cache-busting ``?v=`` on them is harmless and a browser may add one.
NOT_CHECKED = {"/api/v1/docs", "/api/v1/docs/", "/api/v1/openapi.json"}
# The parameters an endpoint requires, sent with the unknown one so that only it is wrong.
REQUIRED = {"/api/v1/efectivos/cercanos": "lat=40.4&lng=-3.7&"}


def _json_get_rules(app: Flask) -> list[str]:
    rules = [rule.rule for rule in app.url_map.iter_rules() if "GET" in (rule.methods or ())]
    return sorted(rule for rule in rules if (rule.startswith("/api/v1/") or rule == "/ws/stats") and rule not in NOT_CHECKED)


@pytest.fixture
def world(app: Flask, build: Builders) -> dict[str, Any]:
    admin = build.usuario(nivel=3)
    efectivo = build.efectivo()
    return {
        "headers": build.headers(admin),
        "tarea_id": build.tarea(admin).id,
        "efectivo_id": efectivo.id,
        "usuario_id": admin.id,
        "turno_id": build.turno(efectivo, datetime.now(UTC) + timedelta(days=1)).id,
        "alerta_id": build.alerta(admin).id,
        "notificacion_id": build.notificacion(admin).id,
    }


def _path(rule: str, world: dict[str, Any]) -> str:
    for name, value in world.items():
        rule = rule.replace(f"<int:{name}>", str(value))
    assert "<" not in rule, f"no id for {rule}: add it to the world"
    return rule


def test_an_unknown_parameter_is_the_same_422_everywhere(app: Flask, world: dict[str, Any]) -> None:
    client = app.test_client()
    reference = client.get("/api/v1/tasks?zz_unknown=1", headers=world["headers"]).get_json()
    assert reference["status"] == 422 and reference["code"] == "validation_error"
    assert [error["field"] for error in reference["errors"]] == ["query.zz_unknown"]
    ignoring = []
    for rule in _json_get_rules(app):
        path = _path(rule, world) + "?" + REQUIRED.get(rule, "")
        assert client.get(path, headers=world["headers"]).status_code == 200, path  # the endpoint answers without it
        response = client.get(path + "zz_unknown=1", headers=world["headers"])
        if response.status_code != 422:
            ignoring.append((path, response.status_code))
            continue
        assert response.headers["Content-Type"] == PROBLEM, path
        body = response.get_json()
        assert (body["code"], body["title"], body["errors"]) == (reference["code"], reference["title"], reference["errors"]), path
    assert not ignoring


@pytest.mark.parametrize("path", ["/api/v1/tasks/{tarea_id}/historial", "/api/v1/auth/sessions"])
def test_historial_and_sessions_name_every_unknown_parameter(app: Flask, world: dict[str, Any], path: str) -> None:
    response = app.test_client().get(path.format(**world) + "?limit=5&since=3", headers=world["headers"])
    assert response.status_code == 422
    assert {error["field"] for error in response.get_json()["errors"]} == {"query.limit", "query.since"}


def test_an_unknown_parameter_is_refused_after_authentication(app: Flask, world: dict[str, Any]) -> None:
    # 401 before 422, as for every input: an anonymous caller learns nothing about the endpoint's parameters.
    response = app.test_client().get(f"/api/v1/tasks/{world['tarea_id']}/historial?zz=1")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("get", "/api/v1/tasks?offset=2147483648", None, "query.offset"),
        ("get", "/api/v1/efectivos?skip=99999999999999999999", None, "query.offset"),
        ("get", "/api/v1/eventos?after_id=99999999999999999999", None, "query.after_id"),
        ("get", "/api/v1/eventos?actor_id=2147483648", None, "query.actor_id"),
        ("get", "/api/v1/eventos?entity_id=2147483648", None, "query.entity_id"),
        ("post", "/api/v1/efectivos", {"codigo_interno": "EF-BIG", "nombre": "Agente Grande", "usuario_id": 2**31}, "body.usuario_id"),
    ],
)
def test_a_number_past_what_the_database_holds_is_422_naming_it(
    app: Flask, world: dict[str, Any], method: str, path: str, body: dict[str, Any] | None, field: str
) -> None:
    """Not the database's anonymous "out of range" (no ``errors``): the schema bounds each number by its column."""
    client = app.test_client()
    response = getattr(client, method)(path, json=body, headers=world["headers"]) if body else getattr(client, method)(path, headers=world["headers"])
    assert response.status_code == 422 and response.headers["Content-Type"] == PROBLEM
    assert [error["field"] for error in response.get_json()["errors"]] == [field]


def test_a_parameter_given_twice_with_different_values_is_422_naming_it(app: Flask, world: dict[str, Any]) -> None:
    """`?limit=5&limit=500` answered with the last one, silently: a script that built its query from two sources got
    a page other than the one it thought it asked for. A list parameter still takes every value."""
    client = app.test_client()
    headers = world["headers"]
    response = client.get("/api/v1/tasks?limit=5&limit=500", headers=headers)
    assert response.status_code == 422 and response.mimetype == PROBLEM
    [error] = response.get_json()["errors"]
    assert error["field"] == "query.limit" and error["type"] == "repeated"
    assert error["mensaje"] == "Aparece más de una vez con valores distintos: indíquelo una sola vez."
    assert client.get("/api/v1/tasks?limit=5&limit=5", headers=headers).status_code == 200  # the same twice: no doubt
    assert client.get("/api/v1/tasks?estado=programada&estado=en_curso", headers=headers).status_code == 200


def test_a_parameter_given_twice_is_named_once_as_what_is_wrong_with_it(app: Flask, world: dict[str, Any]) -> None:
    """Two different ``since`` on a websocket handshake: which one the client meant is not for the server to guess.
    An unknown parameter given twice is unknown, not repeated."""
    client = app.test_client()
    token = world["headers"]["Authorization"].split()[1]
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    twice = client.get(f"/ws/connect?token={token}&since=1&since=2", headers=upgrade)
    assert twice.status_code == 422 and twice.headers["Content-Type"] == PROBLEM
    assert [(e["field"], e["type"]) for e in twice.get_json()["errors"]] == [("query.since", "repeated")]
    # The handshake ignores parameters it does not know (a page's cache-buster), however often they are given.
    ignored = client.get(f"/ws/connect?token={token}&v=1&v=2&since=abc", headers=upgrade)
    assert [(e["field"], e["type"]) for e in ignored.get_json()["errors"]] == [("query.since", "int_parsing")]
    unknown = client.get("/api/v1/tasks?prioridad=1&prioridad=2", headers=world["headers"])
    assert [(e["field"], e["type"]) for e in unknown.get_json()["errors"]] == [("query.prioridad", "extra_forbidden")]


def test_a_websocket_address_opened_as_a_page_says_what_it_is(app: Flask, world: dict[str, Any]) -> None:
    token = world["headers"]["Authorization"].split()[1]
    plain = app.test_client().get(f"/ws/connect?token={token}")
    assert plain.status_code == 400 and plain.headers["Content-Type"] == PROBLEM
    assert "websocket" in plain.get_json()["detail"].lower()
