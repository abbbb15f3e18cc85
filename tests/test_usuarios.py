"""Usuarios API: who may edit whom, nivel changes with ETags, unique identity fields, listing, own profile."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.builders import Builders


def test_user_cannot_escalate_own_nivel_or_edit_others(client: FlaskClient, build: Builders) -> None:
    user, other = build.usuario(1), build.usuario(1)
    headers = build.headers(user)
    assert client.patch(f"/api/v1/users/{user.id}", json={"nivel": 3}, headers=headers).status_code == 403
    assert client.patch(f"/api/v1/users/{user.id}", json={"verificado": False}, headers=headers).status_code == 403
    assert client.patch(f"/api/v1/users/{other.id}", json={"nombre": "Hacked"}, headers=headers).status_code == 403
    own = client.patch(f"/api/v1/users/{user.id}", json={"nombre": "  Nuevo   Nombre ", "telefono": "600111222"}, headers=headers)
    assert own.status_code == 200 and own.get_json()["nombre"] == "Nuevo Nombre"


def test_admin_changes_nivel_and_old_etag_is_refused(client: FlaskClient, build: Builders) -> None:
    admin, user = build.usuario(3), build.usuario(1)
    headers = build.headers(admin)
    etag = client.get(f"/api/v1/users/{user.id}", headers=headers).headers["ETag"]
    assert client.patch(f"/api/v1/users/{user.id}", json={"nivel": 2}, headers=headers | {"If-Match": etag}).status_code == 200
    stale = client.patch(f"/api/v1/users/{user.id}", json={"nivel": 3}, headers=headers | {"If-Match": etag})
    assert stale.status_code == 412 and stale.headers["ETag"] == '"2"'


@pytest.mark.parametrize("field", ["email", "dni", "telegram_id"])
def test_duplicate_identity_fields_are_409_naming_the_field(client: FlaskClient, build: Builders, field: str) -> None:
    admin = build.usuario(3)
    existing = build.usuario(1, telegram_id=123456789)
    body = {"email": "fresh@gad.test", "password": "a-long-password", "dni": "66666666Q", "nombre": "Dup", "apellido": "Licado"}
    body[field] = {"email": existing.email.upper(), "dni": existing.dni, "telegram_id": 123456789}[field]
    response = client.post("/api/v1/users", json=body, headers=build.headers(admin))
    assert response.status_code == 409 and response.get_json()["field"] == field


def test_users_never_expose_password_hashes(client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    body = client.get("/api/v1/users", headers=build.headers(admin)).get_data(as_text=True)
    assert "argon2" not in body and "password" not in body


def test_user_list_filters_and_paginates(client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    for _ in range(3):
        build.usuario(2)
    page = client.get("/api/v1/users?nivel=2&limit=2&offset=0", headers=build.headers(admin)).get_json()
    assert page["total"] == 3 and len(page["items"]) == 2 and page["limit"] == 2
    assert client.get("/api/v1/users?limit=500", headers=build.headers(admin)).status_code == 422


def test_efectivo_reads_only_own_profile(client: FlaskClient, build: Builders) -> None:
    user, other = build.usuario(1), build.usuario(1)
    assert client.get(f"/api/v1/users/{user.id}", headers=build.headers(user)).status_code == 200
    assert client.get(f"/api/v1/users/{other.id}", headers=build.headers(user)).status_code == 403
