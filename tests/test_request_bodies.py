"""Hostile JSON bodies: nesting beyond the bound is a 400 at parse time, oversize bodies are refused before they are
read, and bodies within the bounds validate normally. Over real HTTP to gunicorn + gevent."""

from __future__ import annotations

import gzip
import io
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer
from tests.helpers import PROBLEM, assert_422_naming, tarea_body


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"codigo": "DEEP-1", "titulo": "Anidado hondo", "tipo": "patrullaje", "notas": ' + b"[" * 900 + b"]" * 900 + b"}",
        b'{"codigo": "DEEP-2", "titulo": "Anidado justo", "tipo": "patrullaje", "notas": ' + b'{"x":' * 32 + b"1" + b"}" * 32 + b"}",
    ],
    ids=["arrays-100k", "objects-50k", "field-900", "field-33"],
)
def test_deeply_nested_json_is_400_at_parse_time(live_server: LiveServer, build: Builders, body: bytes) -> None:
    headers = build.headers(build.usuario(3)) | {"Content-Type": "application/json"}
    response = requests.post(live_server.url + "/api/v1/tasks", data=body, headers=headers, timeout=60)
    assert response.status_code == 400, response.text[:300]
    assert response.headers["Content-Type"] == PROBLEM and "nests deeper" in response.json()["detail"]
    assert requests.get(live_server.url + "/api/v1/tasks", headers=headers, timeout=30).status_code == 200  # the worker is fine


def test_json_within_the_depth_bound_is_validated_normally(live_server: LiveServer, build: Builders) -> None:
    headers = build.headers(build.usuario(3))
    body = tarea_body("DEEP-OK") | {"notas": {"x": [[1]]}}
    response = requests.post(live_server.url + "/api/v1/tasks", json=body, headers=headers, timeout=30)
    assert_422_naming(response, "body.notas")  # a schema error, not a parse error


def test_oversized_json_is_refused_before_it_is_read(live_server: LiveServer, build: Builders) -> None:
    headers = build.headers(build.usuario(3)) | {"Content-Type": "application/json"}
    huge = b'{"codigo": "BIG-1", "titulo": "Muy grande", "tipo": "patrullaje", "notas": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = requests.post(live_server.url + "/api/v1/tasks", data=huge, headers=headers, timeout=60)
    assert response.status_code == 413 and response.headers["Content-Type"] == PROBLEM

    def chunks() -> Any:
        yield huge[:1000]
        for start in range(1000, len(huge), 65536):
            yield huge[start : start + 65536]

    streamed = requests.post(live_server.url + "/api/v1/tasks", data=chunks(), headers=headers, timeout=60)  # no Content-Length
    assert streamed.status_code == 413 and streamed.headers["Content-Type"] == PROBLEM, streamed.text[:300]
    # A streamed body within the limit that is not JSON stays a 400.
    broken = requests.post(live_server.url + "/api/v1/tasks", data=iter([b'{"codigo": ', b'"CHUNK-1"']), headers=headers, timeout=30)
    assert broken.status_code == 400 and broken.headers["Content-Type"] == PROBLEM and "not valid JSON" in broken.json()["detail"]
    digits = requests.post(live_server.url + "/api/v1/tasks", data=b'{"prioridad": ' + b"9" * 5000 + b"}", headers=headers, timeout=30)
    assert digits.status_code == 400 and digits.headers["Content-Type"] == PROBLEM


def test_a_body_declared_as_something_else_is_415_and_one_undeclared_is_read_as_json(live_server: LiveServer, build: Builders) -> None:
    """A form or text body was a 400 "malformed request", though nothing in it was malformed: it was the wrong type.
    And GRUPO_GAD (FastAPI) read a body sent with no Content-Type as JSON: its clients' scripts post json.dumps(...)
    bare, and GAD refused them."""
    headers = build.headers(build.usuario(3))
    url = live_server.url + "/api/v1/tasks"
    body = json.dumps(tarea_body("BARE-1")).encode()
    for declared in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = requests.post(url, data=body, headers=headers | {"Content-Type": declared}, timeout=30)
        assert response.status_code == 415 and response.headers["Content-Type"] == PROBLEM, (declared, response.text[:300])
        assert response.json()["code"] == "unsupported_media_type" and declared.split(";")[0] in response.json()["detail"]
    assert requests.get(url + "?q=BARE-1", headers=headers, timeout=30).json()["total"] == 0
    bare = requests.Request("POST", url, data=body, headers=headers).prepare()
    assert "Content-Type" not in bare.headers
    with requests.Session() as session:
        created = session.send(bare, timeout=30)
    assert created.status_code == 201, created.text[:300]
    assert created.json()["codigo"] == "BARE-1"
    garbage = requests.post(url, data=b"codigo=BARE-2", headers=headers, timeout=30)  # requests sets no type for bytes
    assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["detail"]


def test_a_compressed_body_is_415_whatever_it_holds(live_server: LiveServer, build: Builders) -> None:
    """Nothing decodes a compressed request body: a gzip one was a 400 "not valid JSON", and plain JSON declared as
    gzip was created as if the header were not there. RFC 9110 answers an unsupported content coding with 415."""
    headers = build.headers(build.usuario(3)) | {"Content-Type": "application/json"}
    url = live_server.url + "/api/v1/tasks"
    plain = json.dumps(tarea_body("GZIP-1")).encode()
    for encoding, body in (("gzip", gzip.compress(plain)), ("gzip", plain), ("br", plain), ("deflate, gzip", plain)):
        response = requests.post(url, data=body, headers=headers | {"Content-Encoding": encoding}, timeout=30)
        assert response.status_code == 415 and response.headers["Content-Type"] == PROBLEM, (encoding, response.text[:300])
        assert response.headers["Accept-Encoding"] == "identity" and encoding in response.json()["detail"]
    assert requests.get(url + "?q=GZIP-1", headers=headers, timeout=30).json()["total"] == 0
    identity = requests.post(url, data=plain, headers=headers | {"Content-Encoding": "identity"}, timeout=30)
    assert identity.status_code == 201, identity.text[:300]
    # The same body with gzip as a transfer coding beside chunked (gunicorn takes off only the chunking).
    raw = socket.create_connection(("127.0.0.1", int(live_server.url.rsplit(":", 1)[1])), timeout=30)
    try:
        squeezed = gzip.compress(plain)
        head = f"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: {headers['Authorization']}\r\nContent-Type: application/json\r\n"
        raw.sendall(f"{head}Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n".encode() + b"%x\r\n" % len(squeezed) + squeezed + b"\r\n0\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    finally:
        raw.close()
    assert answer.startswith(b"HTTP/1.1 415"), answer[:300]
    # An unknown path or method is said to be one first.
    assert requests.post(url + "/no-such", data=plain, headers=headers | {"Content-Encoding": "gzip"}, timeout=30).status_code == 404
    assert requests.put(url, data=plain, headers=headers | {"Content-Encoding": "gzip"}, timeout=30).status_code == 405
    # A page's form the same way: the browser never compresses one, so one that came compressed is not a browser's.
    login = requests.post(live_server.url + "/login", data=gzip.compress(b"email=a%40b.es"), headers={"Content-Encoding": "gzip"}, timeout=30)
    assert login.status_code == 415


def test_the_api_login_takes_its_form_or_json_and_says_which_when_sent_neither(live_server: LiveServer, build: Builders) -> None:
    user = build.usuario(1)
    url = live_server.url + "/api/v1/auth/login"
    assert requests.post(url, data={"username": user.email, "password": PASSWORD}, timeout=30).status_code == 200  # GRUPO_GAD's form
    assert requests.post(url, json={"email": user.email, "password": PASSWORD}, timeout=30).status_code == 200
    bare = requests.Request("POST", url, data=json.dumps({"email": user.email, "password": PASSWORD}).encode()).prepare()
    with requests.Session() as session:
        assert session.send(bare, timeout=30).status_code == 200
    text = requests.post(url, data=b"user=x", headers={"Content-Type": "text/plain"}, timeout=30)
    assert text.status_code == 415 and text.headers["Content-Type"] == PROBLEM


def _bodiless_writes(build: Builders) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """A fresh administrador and fresh things for each body-less write to act on (the last one logs its caller out)."""
    admin = build.usuario(3)
    tarea, assigned, other = build.tarea(admin), build.efectivo(), build.usuario(1)
    build.asignacion(tarea, assigned)
    alerta = build.alerta(admin)
    return build.headers(admin), [
        ("post", "/api/v1/cache/clear"),
        ("post", f"/api/v1/users/{other.id}/reactivar"),
        ("post", f"/api/v1/users/{other.id}/logout-all"),
        ("delete", f"/api/v1/tasks/{tarea.id}/efectivos/{assigned.id}"),
        ("delete", f"/api/v1/efectivos/{build.efectivo().id}"),
        ("post", f"/api/v1/alertas/{alerta.id}/reenviar"),
        ("post", f"/api/v1/alertas/{alerta.id}/cerrar"),
        ("post", "/api/v1/auth/logout-all"),
    ]


def test_a_write_that_takes_no_body_refuses_one_it_cannot_mean_and_accepts_none_or_an_empty_object(client: FlaskClient, build: Builders) -> None:
    """A body-less action given a form, text or JSON with fields was sent something other than what it does: said
    (415 / 422 / 400), never done as if the body were not there. No body, or ``{}`` from a client that always sends
    JSON, is the action itself."""
    headers, writes = _bodiless_writes(build)
    for method, path in writes:
        call = getattr(client, method)
        form = call(path, data={"motivo": "x"}, headers=headers)
        assert form.status_code == 415 and form.mimetype == PROBLEM, (path, form.status_code)
        text = call(path, data="cerrar", headers=headers | {"Content-Type": "text/plain"})
        assert text.status_code == 415, (path, text.status_code)
        fields = call(path, json={"motivo": "x"}, headers=headers)
        assert fields.status_code == 422 and fields.get_json()["errors"][0]["field"] == "body.motivo", (path, fields.get_json())
        broken = call(path, data="{", headers=headers | {"Content-Type": "application/json"})
        assert broken.status_code == 400, (path, broken.status_code)
        unknown = call(path + "?motivo=x", headers=headers)
        assert unknown.status_code == 422 and unknown.get_json()["errors"][0]["field"] == "query.motivo", (path, unknown.get_json())
    for body in ({}, {"json": {}}, {"input_stream": io.BytesIO(b""), "headers": {"Transfer-Encoding": "chunked"}}):
        headers, writes = _bodiless_writes(build)
        for method, path in writes:
            done = getattr(client, method)(path, **(body | {"headers": headers | body.get("headers", {})}))
            assert done.status_code < 300, (path, body, done.status_code, done.get_json())


def test_every_documented_write_without_a_body_refuses_one(app: Flask, client: FlaskClient, build: Builders) -> None:
    """The rule above holds for every endpoint the API document says takes no body, so a new one cannot forget
    ``no_input()``: a form sent to it is 415 before anything is looked up (the ids below need not exist)."""
    headers = build.headers(build.usuario(3))
    checked = []
    for rule in app.url_map.iter_rules():
        doc = getattr(app.view_functions[rule.endpoint], "_gad_openapi", None)
        if doc is None or doc["json"] is not None or doc["form"] is not None or rule.websocket:
            continue
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}):
            path = re.sub(r"<(?:int:)?\w+>", "999999", rule.rule)
            answer = client.open(path, method=method, data={"motivo": "x"}, headers=headers)
            assert answer.status_code == 415, (method, rule.rule, answer.status_code)
            checked.append((method, rule.rule))
    assert len(checked) >= 14, checked


class _SlowBody(io.BytesIO):
    """A phone on a bad link: the first bytes of the body at once, the rest after ``pause`` seconds."""

    def __init__(self, data: bytes, pause: float) -> None:
        super().__init__(data)
        self.pause: float | None = pause

    def _wait_after_the_first_bytes(self) -> int | None:
        if self.pause is None:
            return None
        if self.tell() == 0:
            return 5
        time.sleep(self.pause)
        self.pause = None
        return None

    def read(self, size: int | None = -1) -> bytes:
        first = self._wait_after_the_first_bytes()
        return super().read(first if first is not None else size)

    def readinto(self, buffer: Any) -> int:
        first = self._wait_after_the_first_bytes()
        return super().readinto(memoryview(buffer)[:first] if first is not None else buffer)


def test_a_write_whose_body_arrives_slowly_is_applied(app_with: Callable[..., Flask], build: Builders) -> None:
    """Authentication opened the request's transaction before the body was read: a body slower to arrive than the
    idle-transaction limit had the session ended under it, and a valid write was answered 503 and lost."""
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    slow_app = app_with(DB_IDLE_IN_TRANSACTION_TIMEOUT_MS=300)
    body = json.dumps({"estado": "no_disponible"}).encode()
    response = slow_app.test_client().post(
        f"/api/v1/efectivos/{efectivo.id}/disponibilidad",
        input_stream=_SlowBody(body, pause=0.8),
        content_length=len(body),
        content_type="application/json",
        headers=build.headers(officer),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["estado_disponibilidad"] == "no_disponible"


def test_a_body_cut_short_is_400_not_a_database_failure(client: FlaskClient, build: Builders) -> None:
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    body = json.dumps({"estado": "no_disponible"}).encode()
    response = client.post(
        f"/api/v1/efectivos/{efectivo.id}/disponibilidad",
        input_stream=io.BytesIO(body[:10]),
        content_length=len(body),
        content_type="application/json",
        headers=build.headers(officer),
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == PROBLEM
    assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=build.headers(officer)).get_json()["estado_disponibilidad"] == "disponible"
