"""The error contract: every 4xx/5xx, routing errors included, is application/problem+json."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from pydantic import Field

from gad.schemas.common import InModel, json_type_errors
from tests.builders import Builders
from tests.conftest import make_app

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/no/such/route", {}, 404),
        ("delete", "/health", {}, 405),
        ("post", "/api/v1/auth/login", {"data": "{not json", "content_type": "application/json"}, 400),
        ("post", "/api/v1/auth/login", {"json": {"email": 5}}, 422),
        ("post", "/api/v1/auth/login", {"data": "x" * (2 * 1024 * 1024), "content_type": "application/json"}, 413),
    ],
)
def test_every_error_is_problem_json(client: FlaskClient, method: str, path: str, kwargs: dict, status: int) -> None:
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]


def test_validation_problem_lists_field_paths(client: FlaskClient) -> None:
    body = client.post("/api/v1/auth/login", json={"email": 5}).get_json()
    fields = {error["field"] for error in body["errors"]}
    assert {"body.email", "body.password"} <= fields


def test_method_not_allowed_names_allowed_methods(client: FlaskClient) -> None:
    response = client.delete("/health")
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_problem_json_without_traceback(database_url: str) -> None:
    app = make_app(database_url, PROPAGATE_EXCEPTIONS=False, TESTING=False)

    @app.get("/_boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/_boom")
    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_204_carries_neither_body_nor_content_type(client: FlaskClient, build: Builders) -> None:
    """No Content has nothing to label: a JSON client must not find an empty body announced as text/html."""
    admin = build.usuario(3)
    headers = build.headers(admin)
    answers = {
        "delete tarea": client.delete(f"/api/v1/tasks/{build.tarea(admin).id}", headers=headers),
        "deactivate efectivo": client.delete(f"/api/v1/efectivos/{build.efectivo().id}", headers=headers),
        "deactivate usuario": client.delete(f"/api/v1/users/{build.usuario(1).id}", headers=headers),
        "logout": client.post("/api/v1/auth/logout", headers=headers),
    }
    for what, answer in answers.items():
        assert answer.status_code == 204, (what, answer.get_json())
        assert answer.data == b"" and "Content-Type" not in answer.headers, (what, dict(answer.headers))


@pytest.mark.parametrize(
    ("path", "body", "field", "kind"),
    [
        ("/api/v1/tasks", {"prioridad": True}, "body.prioridad", "int_type"),
        ("/api/v1/tasks", {"prioridad": "3"}, "body.prioridad", "int_type"),
        ("/api/v1/tasks", {"prioridad": 3.0}, "body.prioridad", "int_type"),
        ("/api/v1/tasks", {"delegado_usuario_id": "2"}, "body.delegado_usuario_id", "int_type"),
        ("/api/v1/tasks", {"ubicacion_lat": "40.4", "ubicacion_lng": -3.7}, "body.ubicacion_lat", "float_type"),
        ("/api/v1/tasks", {"ubicacion_lat": True, "ubicacion_lng": -3.7}, "body.ubicacion_lat", "float_type"),
        ("/api/v1/users", {"verificado": 1}, "body.verificado", "bool_type"),
        ("/api/v1/users", {"verificado": "true"}, "body.verificado", "bool_type"),
        ("/api/v1/users", {"nivel": "1"}, "body.nivel", "int_type"),
        ("/api/v1/alertas", {"usuario_ids": [1, "2"]}, "body.usuario_ids.1", "int_type"),
        ("/api/v1/turnos", {"repetir": {"cada_horas": "24"}}, "body.repetir.cada_horas", "int_type"),
    ],
)
def test_a_json_value_of_the_wrong_json_type_is_422_naming_it(client: FlaskClient, build: Builders, path: str, body: dict, field: str, kind: str) -> None:
    """JSON has numbers, booleans and strings: ``"3"``, ``3.0`` and ``true`` are not the integer 3 or 1 a form's
    text would be converted to, and ``1`` is not a boolean. Named once, beside whatever else the body lacks."""
    admin = build.usuario(3)
    response = client.post(path, json=body, headers=build.headers(admin))
    assert response.status_code == 422 and response.mimetype == PROBLEM
    errors = response.get_json()["errors"]
    assert [(error["field"], error["type"]) for error in errors if error["field"] == field] == [(field, kind)]
    assert all(error["mensaje"] for error in errors)


def test_a_wrong_json_type_is_reported_with_the_bodys_other_errors(client: FlaskClient, build: Builders) -> None:
    response = client.post("/api/v1/tasks", json={"prioridad": "3", "titulo": "x"}, headers=build.headers(build.usuario(3)))
    fields = {error["field"]: error["type"] for error in response.get_json()["errors"]}
    assert fields == {"body.prioridad": "int_type", "body.titulo": "string_too_short", "body.codigo": "missing", "body.tipo": "missing"}


def test_json_types_are_checked_in_lists_of_nested_models_and_under_a_validation_alias() -> None:
    """No request model has these shapes yet; the check must still read them as pydantic does."""

    class Item(InModel):
        n: int

    class Body(InModel):
        items: list[Item]
        flag: bool = Field(False, validation_alias="bandera")

    assert json_type_errors(Body, {"items": [{"n": 1}, {"n": "2"}], "bandera": 1}) == [
        ("items.1.n", "int_type", "Input should be a valid integer"),
        ("bandera", "bool_type", "Input should be a valid boolean"),
    ]
    assert json_type_errors(Body, {"items": [{"n": 1}], "bandera": True}) == []


def test_json_numbers_booleans_and_null_of_the_right_type_are_accepted(client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    body = {"codigo": "TIPOS-1", "titulo": "Tipos correctos", "tipo": "patrullaje", "prioridad": 4, "ubicacion_lat": 40, "ubicacion_lng": -3.5}
    created = client.post("/api/v1/tasks", json=body | {"delegado_usuario_id": None}, headers=build.headers(admin))
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["ubicacion_lat"] == 40 and created.get_json()["prioridad"] == 4


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("post", "/api/v1/tasks", {"json": {"codigo": "NUL-1", "titulo": "abc\u0000def", "tipo": "patrullaje"}}, "body.titulo"),
        ("post", "/api/v1/tasks", {"json": {"codigo": "NUL-2", "titulo": "Con notas", "tipo": "patrullaje", "notas": {"a": ["x\u0000"]}}}, "body.notas.a.0"),
        ("post", "/api/v1/auth/login", {"json": {"email": "a\u0000@gad.test", "password": "p"}}, "body.email"),
        ("get", "/api/v1/efectivos", {"query_string": {"unidad": "\u0000"}}, "query.unidad"),
        ("post", "/api/v1/tasks", {"json": {"codigo": "NUL-3", "titulo": "Clave nula", "tipo": "patrullaje", "notas": {"k\u0000": 1}}}, "body.notas.k\u0000"),
    ],
)
def test_a_nul_character_is_422_naming_the_field_that_holds_it(client: FlaskClient, build: Builders, method: str, path: str, kwargs: dict, field: str) -> None:
    response = getattr(client, method)(path, headers=build.headers(build.usuario(3)), **kwargs)
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert [(error["field"], error["type"]) for error in response.get_json()["errors"]] == [(field, "nul_character")]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_a_nul_character_is_422_in_a_body_in_any_encoding_json_allows(client: FlaskClient, build: Builders, encoding: str) -> None:
    # parse_json skips the walk that looks for NUL when the body's bytes cannot hold one (no "\\u0000", no zero
    # byte): a body in UTF-16 or UTF-32, which the parser reads too, must still be looked through.
    for codigo, titulo, status in (("NUL-ENC-1", "Con nulo \u0000", 422), ("NUL-ENC-2", "Sin nulo \\u0000 escrito", 201)):
        body = json.dumps({"codigo": codigo, "titulo": titulo, "tipo": "patrullaje"}).encode(encoding)
        response = client.post("/api/v1/tasks", data=body, content_type="application/json", headers=build.headers(build.usuario(3)))
        assert response.status_code == status, response.get_json()
        if status == 422:
            assert [(error["field"], error["type"]) for error in response.get_json()["errors"]] == [("body.titulo", "nul_character")]
        else:
            assert response.get_json()["titulo"] == titulo


@pytest.mark.parametrize("zero", [0x0660, 0xFF10, 0x0966], ids=["arabic-indic", "fullwidth", "devanagari"])
def test_an_id_in_unicode_digits_is_no_second_address_of_a_resource(client: FlaskClient, build: Builders, zero: int) -> None:
    """`/api/v1/tasks/１` was tarea 1 (a fuzzer's DELETE of it removed tarea 1): a second address for every resource,
    one that path rules in a proxy, a WAF or a log search never match."""
    admin = build.usuario(3)
    tarea = build.tarea(admin)
    spelled = quote("".join(chr(zero + int(d)) for d in str(tarea.id)))
    for method in ("get", "delete"):
        response = getattr(client, method)(f"/api/v1/tasks/{spelled}", headers=build.headers(admin))
        assert response.status_code == 404 and response.mimetype == PROBLEM
    assert client.get(f"/api/v1/users/{quote(''.join(chr(zero + int(d)) for d in str(admin.id)))}", headers=build.headers(admin)).status_code == 404
    assert client.get(f"/api/v1/tasks/{tarea.id}", headers=build.headers(admin)).status_code == 200  # still there


@pytest.mark.parametrize(("method", "path"), [("get", "/api/v1//tasks"), ("post", "/api/v1//tasks"), ("get", "//api/v1/users/me"), ("get", "/ws//stats")])
def test_a_doubled_slash_is_no_second_address_and_no_redirect(client: FlaskClient, build: Builders, method: str, path: str) -> None:
    """werkzeug merged doubled slashes with a 308 to an HTML page whose Location it built from the Host header:
    a redirect an attacker's Host could point elsewhere, and a second address for every path."""
    response = getattr(client, method)(path, headers=build.headers(build.usuario(3), Host="evil.example"), json={})
    assert response.status_code == 404 and response.mimetype == PROBLEM and "Location" not in response.headers


def test_every_field_error_a_form_can_meet_says_it_in_spanish(client: FlaskClient, build: Builders) -> None:
    """Errors built by GAD's own rules (not pydantic's) carried only the English message, which the forms showed
    beside the field: a turno too long, a report's dates, a body that is not an object, a key reused."""
    sup = build.usuario(2)
    headers = build.headers(sup)
    efectivo = build.efectivo()
    answers = {
        "turno too long": client.post(
            "/api/v1/turnos",
            json={"efectivo_id": efectivo.id, "inicio": "2027-03-01T08:00:00+01:00", "fin": "2027-03-05T08:00:00+01:00"},
            headers=headers,
        ),
        "report date": client.get("/api/v1/reportes/carga?desde=ayer", headers=headers),
        "report range": client.get("/api/v1/reportes/carga?desde=2026-05-02&hasta=2026-05-01", headers=headers),
        "body not an object": client.post("/api/v1/tasks", json=[], headers=headers),
        "unknown efectivo": client.post(
            "/api/v1/turnos", json={"efectivo_id": 999_999, "inicio": "2027-03-01T08:00:00+01:00", "fin": "2027-03-01T16:00:00+01:00"}, headers=headers
        ),
    }
    key = {"Idempotency-Key": "una-clave"}
    assert client.post("/api/v1/tasks", json={"codigo": "IDEM-1", "titulo": "Ronda de prueba", "tipo": "patrullaje"}, headers=headers | key).status_code == 201
    answers["key reused"] = client.post(
        "/api/v1/tasks", json={"codigo": "IDEM-2", "titulo": "Otra ronda de prueba", "tipo": "patrullaje"}, headers=headers | key
    )
    expected = {
        "turno too long": "Un turno dura como máximo 72 horas.",
        "report date": "Fecha no válida: AAAA-MM-DD, o fecha y hora con zona (p. ej. 2026-12-01T08:00+01:00).",
        "report range": "«Hasta» debe ser posterior a «desde».",
        "body not an object": "El cuerpo de la petición debe ser un objeto JSON.",
        "unknown efectivo": "El efectivo 999999 no existe.",
        "key reused": "Esa clave de idempotencia ya se usó con otra petición.",
    }
    for case, response in answers.items():
        assert response.status_code == 422, (case, response.get_json())
        assert [e["mensaje"] for e in response.get_json()["errors"]] == [expected[case]], case


def test_each_unknown_id_of_a_list_is_named_in_spanish(client: FlaskClient, build: Builders) -> None:
    """Two unknown efectivos in one assignment read "No existe o no está activo." twice: which ones was not said."""
    sup = build.usuario(2)
    tarea = build.tarea(sup)
    known = build.efectivo()
    response = client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [known.id, 999_998, 999_999]}, headers=build.headers(sup))
    assert response.status_code == 422
    assert [(e["field"], e["mensaje"]) for e in response.get_json()["errors"]] == [
        ("body.efectivo_ids", "El efectivo 999998 no existe."),
        ("body.efectivo_ids", "El efectivo 999999 no existe."),
    ]


def test_a_text_too_long_or_empty_is_measured_in_characters(client: FlaskClient, build: Builders) -> None:
    """Cleaned texts (trimmed, spaces collapsed) were checked as lists are: "at most 50 items", "Como máximo 50
    elementos", and "al menos 1 elementos" for an empty name."""
    sup = build.usuario(2)
    efectivo = build.efectivo()
    response = client.patch(f"/api/v1/efectivos/{efectivo.id}", json={"rango": "x" * 51}, headers=build.headers(sup))
    assert response.status_code == 422
    [error] = response.get_json()["errors"]
    assert error == {
        "field": "body.rango",
        "type": "string_too_long",
        "message": "String should have at most 50 characters",
        "mensaje": "Demasiado largo: como máximo 50 caracteres.",
    }
    admin = build.usuario(3)
    empty = client.patch(f"/api/v1/users/{sup.id}", json={"nombre": "   "}, headers=build.headers(admin))
    assert empty.status_code == 422
    assert [(e["type"], e["mensaje"]) for e in empty.get_json()["errors"]] == [("string_too_short", "No puede quedar vacío.")]


T0 = "2026-12-07T08:00:00+00:00"
CROSS_FIELD_RULES = [
    (
        "post",
        "/api/v1/tasks",
        {"codigo": "PAT-1", "titulo": "Ronda larga", "tipo": "patrullaje", "ubicacion_lat": 40.4},
        "body.ubicacion_lng",
        "Latitud y longitud van juntas",
    ),
    (
        "post",
        "/api/v1/tasks",
        {"codigo": "PAT-2", "titulo": "Ronda larga", "tipo": "patrullaje", "inicio_programado": T0, "fin_programado": "2026-12-07T07:00:00+00:00"},
        "body.fin_programado",
        "El fin debe ser posterior al inicio",
    ),
    ("post", "/api/v1/tasks", {"codigo": "EMG-9", "titulo": "Ronda larga", "tipo": "patrullaje"}, "body.codigo", "reservados a las emergencias"),
    ("patch", "/api/v1/tasks/{tarea}", {"estado": "finalizada"}, "body.estado", "Cambiar estado"),
    ("post", "/api/v1/alertas", {"tipo": "aviso", "texto": "Atención", "destino": "unidad"}, "body.unidad", "destino «unidad»"),
    ("post", "/api/v1/alertas", {"tipo": "aviso", "texto": "Atención", "destino": "todos", "usuario_ids": [1]}, "body.usuario_ids", "destino «usuarios»"),
    (
        "post",
        "/api/v1/turnos",
        {"efectivo_id": 1, "inicio": T0, "fin": "2026-12-07T16:00:00+00:00", "repetir": {"hasta": "2026-12-20T00:00:00+00:00"}},
        "body.repetir.cada_horas",
        "cada_horas o dias_semana",
    ),
    (
        "post",
        "/api/v1/turnos",
        {"efectivo_id": 1, "inicio": T0, "fin": "2026-12-07T16:00:00+00:00", "repetir": {"hasta": "2026-12-20T00:00:00+00:00", "dias_semana": [7]}},
        "body.repetir.dias_semana",
        "0 (lunes) a 6 (domingo)",
    ),
    ("get", "/api/v1/eventos?desde=2026-12-07T08:00:00Z&hasta=2026-12-06T08:00:00Z", None, "query.hasta", "anterior a «desde»"),
    ("get", "/api/v1/tasks?skip=10&offset=20", None, "query.offset", "offset o skip"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "said"), CROSS_FIELD_RULES, ids=[f"{f}-{i}" for i, (_, __, ___, f, ____) in enumerate(CROSS_FIELD_RULES)]
)
def test_a_rule_across_fields_names_the_field_to_fix_and_says_why_in_spanish(
    client: FlaskClient, build: Builders, method: str, path: str, body: dict | None, field: str, said: str
) -> None:
    """A form shows ``mensaje`` beside the field ``field`` names: "Valor no válido." beside the whole form told
    nobody what to change."""
    admin = build.usuario(3)
    path = path.format(tarea=build.tarea(admin).id)
    response = getattr(client, method)(path, headers=build.headers(admin), **({"json": body} if body is not None else {}))
    assert response.status_code == 422 and response.mimetype == PROBLEM, response.get_json()
    [error] = [error for error in response.get_json()["errors"] if error["field"] == field]
    assert said in error["mensaje"] and error["mensaje"] != "Valor no válido.", error
