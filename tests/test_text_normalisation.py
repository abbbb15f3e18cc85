"""Text a client sends is stripped (or collapsed) before its length is judged: whitespace-only text is a 422 naming
the field, never an empty value stored nor a database constraint's 409."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.models import Alerta, Efectivo, Notificacion, Tarea, Usuario
from tests.builders import PASSWORD, Builders
from tests.helpers import assert_422_naming, count_rows, tarea_body


def _usuario_body(**overrides: Any) -> dict[str, Any]:
    return {"email": "nuevo@gad.test", "password": "Clave-larga-2026", "dni": "12345678Z", "nombre": "Ana", "apellido": "García"} | overrides


def _efectivo_body(**overrides: Any) -> dict[str, Any]:
    return {"codigo_interno": "EF-NUEVO", "nombre": "Agente Nuevo"} | overrides


BLANK = [
    ("/api/v1/tasks", Tarea, tarea_body("BLANK-1", titulo="     "), "titulo"),
    ("/api/v1/tasks", Tarea, tarea_body("BLANK-2", titulo="  abc   "), "titulo"),  # 8 characters sent, 3 of text
    ("/api/v1/users", Usuario, _usuario_body(dni="     "), "dni"),
    ("/api/v1/users", Usuario, _usuario_body(apellido="  "), "apellido"),
    ("/api/v1/users", Usuario, _usuario_body(nombre="   "), "nombre"),
    ("/api/v1/users", Usuario, _usuario_body(apellido=" x    "), "apellido"),
    ("/api/v1/efectivos", Efectivo, _efectivo_body(codigo_interno="   "), "codigo_interno"),
    ("/api/v1/efectivos", Efectivo, _efectivo_body(nombre=" \t "), "nombre"),
    ("/api/v1/alertas", Alerta, {"tipo": "aviso", "texto": "   ", "destino": "todos"}, "texto"),
    # Characters a screen shows as nothing are blank too (zero-width space, BOM, braille blank, Hangul filler).
    ("/api/v1/tasks", Tarea, tarea_body("BLANK-3", titulo="\u200b" * 8), "titulo"),
    ("/api/v1/efectivos", Efectivo, _efectivo_body(nombre="\u2800\u3164 \ufeff"), "nombre"),
    ("/api/v1/alertas", Alerta, {"tipo": "aviso", "texto": "\u2060\u00a0\u200b", "destino": "todos"}, "texto"),
    # ... whatever Unicode calls them: format characters (direction marks and overrides, invisible operators),
    # variation selectors, the combining grapheme joiner, tag characters.
    ("/api/v1/tasks", Tarea, tarea_body("BLANK-4", titulo="\u2061\u200e\u202e\u2062\u2064\u200f"), "titulo"),
    ("/api/v1/tasks", Tarea, tarea_body("BLANK-5", titulo="\ufe0f\u034f\U000e0041\U000e0042\u180b\U000e0100"), "titulo"),
]


@pytest.mark.parametrize(("path", "model", "body", "field"), BLANK, ids=[f"{p.rsplit('/', 1)[1]}.{f}-{i}" for i, (p, _, __, f) in enumerate(BLANK)])
def test_whitespace_only_or_too_short_once_stripped_is_422_naming_the_field(
    app: Flask, client: FlaskClient, build: Builders, path: str, model: Any, body: dict[str, Any], field: str
) -> None:
    admin = build.usuario(3)
    for _ in range(3):
        build.usuario(1)  # someone an alert to «todos» would reach
    existing = count_rows(app, model)
    response = client.post(path, json=body, headers=build.headers(admin))
    assert_422_naming(response, f"body.{field}")
    assert count_rows(app, model) == existing and count_rows(app, Notificacion) == 0


PATCHES = [
    ("tarea", "titulo", "     "),
    ("usuario", "nombre", "   "),
    ("usuario", "dni", "  1234  "),
    ("efectivo", "codigo_interno", "  AB  "),
]


@pytest.mark.parametrize(("kind", "field", "value"), PATCHES, ids=[f"{k}.{f}" for k, f, _ in PATCHES])
def test_a_patch_judges_the_stripped_text_too(client: FlaskClient, build: Builders, kind: str, field: str, value: str) -> None:
    admin = build.usuario(3)
    target = {"tarea": lambda: build.tarea(admin), "usuario": lambda: build.usuario(1), "efectivo": build.efectivo}[kind]()
    path = {"tarea": "/api/v1/tasks/{}", "usuario": "/api/v1/users/{}", "efectivo": "/api/v1/efectivos/{}"}[kind].format(target.id)
    assert_422_naming(client.patch(path, json={field: value}, headers=build.headers(admin)), f"body.{field}")


def test_text_is_stored_stripped_and_names_collapsed_before_their_length_is_judged(client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    headers = build.headers(admin)
    # 102 characters as sent, "Ana María" once collapsed: within nombre's 100.
    created = client.post("/api/v1/users", json=_usuario_body(nombre="  Ana" + " " * 90 + "María  ", apellido="  de   la Vega "), headers=headers)
    assert created.status_code == 201, created.get_json()
    assert (created.get_json()["nombre"], created.get_json()["apellido"]) == ("Ana María", "de la Vega")
    tarea = client.post("/api/v1/tasks", json=tarea_body("STRIP-1", titulo="   Patrulla   del puerto  ", notas="  nota  "), headers=headers)
    assert tarea.status_code == 201, tarea.get_json()
    assert (tarea.get_json()["titulo"], tarea.get_json()["notas"]) == ("Patrulla   del puerto", "nota")
    invisible_ends = client.post("/api/v1/tasks", json=tarea_body("STRIP-3", titulo="\u200bRonda\u200dnocturna\ufeff"), headers=headers)
    assert invisible_ends.status_code == 201 and invisible_ends.get_json()["titulo"] == "Ronda\u200dnocturna"  # inside, kept (emoji use it)
    efectivo = client.post("/api/v1/efectivos", json=_efectivo_body(codigo_interno=" EF-77 ", nombre=" Agente \u200b  Siete\u3164"), headers=headers)
    assert efectivo.status_code == 201 and (efectivo.get_json()["codigo_interno"], efectivo.get_json()["nombre"]) == ("EF-77", "Agente Siete")
    assert client.post("/api/v1/tasks", json=tarea_body("STRIP-2", titulo=5), headers=headers).status_code == 422  # not text: still refused


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_new_tarea_form_shows_the_error_next_to_a_blank_titulo(app: Flask, client: FlaskClient, build: Builders) -> None:
    supervisor = build.usuario(2)
    login = client.post("/login", data={"csrf_token": _csrf(client.get("/login").get_data(as_text=True)), "email": supervisor.email, "password": PASSWORD})
    assert login.status_code in {200, 302}
    token = _csrf(client.get("/tareas/nueva").get_data(as_text=True))
    for titulo in ("      ", "  ab  "):
        form = {"csrf_token": token, "codigo": "FORM-BLANK", "titulo": titulo, "tipo": "patrullaje"}
        response = client.post("/tareas/nueva", data=form)
        assert response.status_code == 422 and 'id="error-titulo"' in response.get_data(as_text=True), titulo
    assert count_rows(app, Tarea) == 0


@pytest.mark.parametrize(("extra", "named"), [({"extra": "1"}, "(extra)"), ({"delegado_usuario_id": "abc"}, "(delegado_usuario_id)")])
def test_new_tarea_form_says_why_when_the_refused_field_is_not_on_it(app: Flask, client: FlaskClient, build: Builders, extra: dict, named: str) -> None:
    """A hand-made POST with a field the form does not show still gets its reason, at the top of the form."""
    supervisor = build.usuario(2)
    client.post("/login", data={"csrf_token": _csrf(client.get("/login").get_data(as_text=True)), "email": supervisor.email, "password": PASSWORD})
    form = {"csrf_token": _csrf(client.get("/tareas/nueva").get_data(as_text=True)), "codigo": "FORM-EXTRA", "titulo": "Con campo de más", "tipo": "patrullaje"}
    response = client.post("/tareas/nueva", data=form | extra)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    alert = re.search(r'<p class="error" role="alert">([^<]+)</p>', page)
    assert alert is not None and named in alert.group(1)
    assert count_rows(app, Tarea) == 0


def test_optional_text_left_blank_is_no_value_never_an_empty_one(client: FlaskClient, build: Builders) -> None:
    """An optional field sent as spaces (a form's untouched input) means "none": stored as null, as if omitted, so
    no blank unidad appears in lists and a turno takes its efectivo's unidad as it does when none is sent."""
    admin = build.usuario(3)
    headers = build.headers(admin)
    created = client.post("/api/v1/efectivos", json=_efectivo_body(rango="   ", unidad="\u3000", especialidad=" \u200b "), headers=headers)
    assert created.status_code == 201, created.get_json()
    assert {k: created.get_json()[k] for k in ("rango", "unidad", "especialidad")} == {"rango": None, "unidad": None, "especialidad": None}
    efectivo = build.efectivo(unidad="Móvil 7", rango="Cabo")
    patched = client.patch(f"/api/v1/efectivos/{efectivo.id}", json={"unidad": "  ", "rango": "Sargento"}, headers=headers)
    assert patched.status_code == 200 and (patched.get_json()["unidad"], patched.get_json()["rango"]) == (None, "Sargento")

    other = build.efectivo(unidad="Móvil 8")
    turno = client.post(
        "/api/v1/turnos",
        json={"efectivo_id": other.id, "inicio": "2026-12-07T08:00:00+00:00", "fin": "2026-12-07T16:00:00+00:00", "unidad": "   ", "notas": " "},
        headers=headers,
    )
    assert turno.status_code == 201, turno.get_json()
    [made] = turno.get_json()["items"]
    assert (made["unidad"], made["notas"]) == ("Móvil 8", None)
    tarea = client.post("/api/v1/tasks", json=tarea_body("BLANK-OPT", descripcion="  ", notas="\t"), headers=headers)
    assert tarea.status_code == 201 and (tarea.get_json()["descripcion"], tarea.get_json()["notas"]) == (None, None)
    too_long = client.post("/api/v1/efectivos", json=_efectivo_body(codigo_interno="EF-LONG", rango="x" * 51), headers=headers)
    assert_422_naming(too_long, "body.rango")  # a value is still measured


@pytest.mark.parametrize("motivo", ["\ud800", "\udfff x \ud83d", "Relevo \udc00"], ids=["alone", "both-ends", "at-the-end"])
def test_a_lone_surrogate_is_refused_wherever_it_stands(client: FlaskClient, build: Builders, motivo: str) -> None:
    """A lone surrogate inside a text was refused, but one at either end was stripped as if blank: a motivo of only
    that was stored as none, and the officer's text was changed without a word."""
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    headers = build.headers(officer)
    body = json.dumps({"estado": "no_disponible", "motivo": motivo})  # \ud800 escapes: what a JSON client can send
    response = client.post(f"/api/v1/efectivos/{efectivo.id}/disponibilidad", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 422, response.get_json()
    assert [e["field"] for e in response.get_json()["errors"]] == ["body.motivo"]
    assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers).get_json()["estado_disponibilidad"] == "disponible"
