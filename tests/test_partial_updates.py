"""PATCH semantics shared by every Patch schema: null only where a field may be cleared, and a PATCH that changes
nothing is a no-op (no new version, no event)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.models import Efectivo, Tarea, Turno, Usuario
from gad.schemas.common import PatchModel
from gad.schemas.efectivos import EfectivoPatch
from gad.schemas.tareas import TareaPatch
from gad.schemas.turnos import TurnoPatch
from gad.schemas.usuarios import UsuarioPatch
from tests.builders import Builders
from tests.conftest import ROOT
from tests.helpers import all_events, assert_422_naming

# Each Patch schema and the table it writes; a field the table has under another name, or not at all.
PATCHED = {TareaPatch: Tarea, UsuarioPatch: Usuario, EfectivoPatch: Efectivo, TurnoPatch: Turno}
COLUMN_OF = {"ubicacion_lng": "ubicacion_lon"}
NOT_COLUMNS = {"password", "current_password", "inicio", "fin"}  # inicio/fin are bounds of turnos.periodo (NOT NULL)


def _patch_models(cls: type[PatchModel] = PatchModel) -> set[type[PatchModel]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _patch_models(sub)
    return found


def test_every_patch_schema_accepts_null_exactly_where_its_column_does() -> None:
    assert _patch_models() == set(PATCHED), "a new Patch schema: add it to PATCHED"
    for schema, model in PATCHED.items():
        assert schema.nullable <= set(schema.model_fields), (schema, schema.nullable - set(schema.model_fields))
        for name in schema.model_fields:
            column = COLUMN_OF.get(name, name)
            if name in NOT_COLUMNS:
                assert name not in schema.nullable, (schema, name)
                continue
            assert model.__table__.c[column].nullable == (name in schema.nullable), (schema.__name__, name)


def test_openapi_document_describes_null_only_for_nullable_patch_fields() -> None:
    document = json.loads((ROOT / "gad" / "openapi.json").read_text())
    described = {name.split(".")[0]: schema for name, schema in document["components"]["schemas"].items() if name.count(".") == 1}
    for patch in PATCHED:
        properties = described[patch.__name__]["properties"]
        for name, prop in properties.items():
            takes_null = {"type": "null"} in prop.get("anyOf", [])
            assert takes_null == (name in patch.nullable), (patch.__name__, name, prop)
            if name not in patch.nullable:
                assert "default" not in prop, (patch.__name__, name)  # omitted keeps the value; it does not send null


def _world(build: Builders) -> dict[str, Any]:
    admin = build.usuario(3)
    efectivo = build.efectivo()
    return {
        "admin": admin,
        "usuario": build.usuario(1),
        "tarea": build.tarea(admin, descripcion="original"),
        "efectivo": efectivo,
        "turno": build.turno(efectivo, notas="nota"),
    }


PATHS = {
    "usuario": "/api/v1/users/{}",
    "tarea": "/api/v1/tasks/{}",
    "efectivo": "/api/v1/efectivos/{}",
    "turno": "/api/v1/turnos/{}",
}
REQUIRED = [
    *[("usuario", f) for f in ("nombre", "apellido", "email", "activo", "verificado", "dni", "nivel", "password", "current_password")],
    *[("tarea", f) for f in ("titulo", "tipo", "prioridad")],
    *[("efectivo", f) for f in ("codigo_interno", "nombre")],
    *[("turno", f) for f in ("tipo", "inicio", "fin", "efectivo_id")],
]


@pytest.mark.parametrize(("kind", "field"), REQUIRED, ids=[f"{k}.{f}" for k, f in REQUIRED])
def test_null_on_a_field_that_cannot_be_empty_is_422_naming_it(app: Flask, client: FlaskClient, build: Builders, kind: str, field: str) -> None:
    world = _world(build)
    headers = build.headers(world["admin"])
    path = PATHS[kind].format(world[kind].id)
    version = client.get(path, headers=headers).headers["ETag"]
    before = len(all_events(app))
    response = client.patch(path, json={field: None}, headers=headers)
    assert_422_naming(response, f"body.{field}")
    error = next(e for e in response.get_json()["errors"] if e["field"] == f"body.{field}")
    assert error["type"] == "null_forbidden" and "may not be null" in error["message"]
    assert field == "current_password" or error["mensaje"] == "Este campo no puede quedar vacío."  # (that one has its own wording)
    assert len(all_events(app)) == before
    assert client.get(path, headers=headers).headers["ETag"] == version


NULLABLE = [
    ("usuario", "telefono", {"telefono": "600000000"}),
    ("tarea", "descripcion", {}),
    ("tarea", "delegado_usuario_id", None),
    ("efectivo", "unidad", {}),
    ("turno", "notas", {}),
]


@pytest.mark.parametrize(("kind", "field", "first"), NULLABLE, ids=[f"{k}.{f}" for k, f, _ in NULLABLE])
def test_null_clears_a_nullable_field(client: FlaskClient, build: Builders, kind: str, field: str, first: dict[str, Any] | None) -> None:
    world = _world(build)
    headers = build.headers(world["admin"])
    path = PATHS[kind].format(world[kind].id)
    if first is None:
        first = {field: world["admin"].id}
    if first:
        assert client.patch(path, json=first, headers=headers).status_code == 200
    response = client.patch(path, json={field: None}, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[field] is None


NO_OPS = {"tarea": TareaPatch, "usuario": UsuarioPatch, "efectivo": EfectivoPatch, "turno": TurnoPatch}


@pytest.mark.parametrize("kind", NO_OPS)
def test_a_patch_that_changes_nothing_is_a_no_op(app: Flask, client: FlaskClient, build: Builders, kind: str) -> None:
    world = _world(build)
    headers = build.headers(world["admin"])
    path = PATHS[kind].format(world[kind].id)
    current = client.get(path, headers=headers)
    body = current.get_json()
    events = len(all_events(app))
    schema = NO_OPS[kind]
    same = {name: value for name, value in body.items() if name in schema.model_fields and (value is not None or name in schema.nullable)}
    for sent in ({}, same):
        response = client.patch(path, json=sent, headers=headers | {"If-Match": current.headers["ETag"]})
        assert response.status_code == 200, (sent, response.get_json())
        assert response.headers["ETag"] == current.headers["ETag"] and response.get_json()["version"] == body["version"], sent
        assert {k: v for k, v in response.get_json().items() if k != "updated_at"} == {k: v for k, v in body.items() if k != "updated_at"}
    assert len(all_events(app)) == events  # nothing announced
    stale = client.patch(path, json={}, headers=headers | {"If-Match": f'"{body["version"] + 7}"'})
    assert stale.status_code == 412  # a no-op still answers a stale If-Match
    changed = client.patch(path, json=same | {{"tarea": "titulo", "turno": "notas"}.get(kind, "nombre"): "Cambiado de verdad"}, headers=headers)
    assert changed.status_code == 200 and changed.get_json()["version"] == body["version"] + 1
    assert len(all_events(app)) == events + 1
