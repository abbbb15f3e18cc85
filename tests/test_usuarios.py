"""Usuarios API: who may edit whom, nivel changes with ETags, unique identity fields, listing, own profile."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.builders import Builders
from tests.helpers import PROBLEM, all_events


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


@pytest.mark.parametrize(("method", "path"), [("DELETE", ""), ("POST", "/reactivar")])
def test_deactivate_and_reactivate_honour_if_match_as_patch_does(app: Flask, client: FlaskClient, build: Builders, method: str, path: str) -> None:
    admin = build.usuario(3)
    user = build.usuario(1, activo=method == "DELETE")  # each starts where its write changes something
    headers = build.headers(admin)
    url = f"/api/v1/users/{user.id}"
    before = client.get(url, headers=headers).get_json()
    events = len(all_events(app))

    stale = client.open(url + path, method=method, headers=headers | {"If-Match": '"999"'})
    assert stale.status_code == 412 and stale.headers["Content-Type"] == PROBLEM and stale.headers["ETag"] == '"1"'
    malformed = client.open(url + path, method=method, headers=headers | {"If-Match": "not-an-etag"})
    assert malformed.status_code == 422 and malformed.headers["Content-Type"] == PROBLEM
    assert [e["field"] for e in malformed.get_json()["errors"]] == ["header.If-Match"]
    assert client.get(url, headers=headers).get_json() == before and len(all_events(app)) == events  # nothing changed

    done = client.open(url + path, method=method, headers=headers | {"If-Match": '"1"'})
    assert done.status_code == (204 if method == "DELETE" else 200), done.get_data(as_text=True)
    after = client.get(url, headers=headers).get_json()
    assert after["activo"] is (method == "POST") and after["version"] == 2
    # Absent If-Match: no check, as for PATCH (this time the usuario is already so: nothing to change).
    assert client.open(url + path, method=method, headers=headers).status_code == done.status_code


def test_reactivating_an_active_usuario_changes_nothing(app: Flask, client: FlaskClient, build: Builders) -> None:
    admin, user = build.usuario(3), build.usuario(1)
    headers = build.headers(admin)
    events = len(all_events(app))
    for _ in range(2):
        again = client.post(f"/api/v1/users/{user.id}/reactivar", headers=headers)
        assert again.status_code == 200 and again.get_json()["version"] == 1 and again.headers["ETag"] == '"1"'
    assert len(all_events(app)) == events
    stale = client.post(f"/api/v1/users/{user.id}/reactivar", headers=headers | {"If-Match": '"999"'})
    assert stale.status_code == 412  # nothing to change, but the client's precondition still holds or fails


@pytest.mark.parametrize("field", ["email", "dni", "telegram_id"])
def test_duplicate_identity_fields_are_409_naming_the_field(client: FlaskClient, build: Builders, field: str) -> None:
    admin = build.usuario(3)
    existing = build.usuario(1, telegram_id=123456789)
    body = {"email": "fresh@gad.test", "password": "a-long-password", "dni": "66666666Q", "nombre": "Dup", "apellido": "Licado"}
    body[field] = {"email": existing.email.upper(), "dni": existing.dni, "telegram_id": 123456789}[field]
    response = client.post("/api/v1/users", json=body, headers=build.headers(admin))
    assert response.status_code == 409 and response.get_json()["field"] == field
    assert (
        response.get_json()["mensaje"]
        == {"email": "Ya hay un usuario con ese correo.", "dni": "Ya hay un usuario con ese DNI.", "telegram_id": "Ya hay un usuario con ese ID de Telegram."}[
            field
        ]
    )


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize(
    ("field", "spelled"),
    [
        ("email", _fullwidth),
        ("email", lambda email: email.replace("user", "USER")),
        ("dni", str.lower),
        ("dni", lambda dni: f"{dni[:-1]}-{dni[-1]}"),
        ("dni", lambda dni: " ".join(dni)),
        ("dni", _fullwidth),
    ],
)
def test_an_identity_spelled_another_way_is_the_same_identity(client: FlaskClient, build: Builders, field: str, spelled: Callable[[str], str]) -> None:
    """Full-width letters, case, a hyphen or spaces in a DNI make no second person: each would let one person hold
    two accounts (or a look-alike e-mail stand in for another's)."""
    admin = build.usuario(3)
    existing = build.usuario(1)
    body = {"email": "fresh@gad.test", "password": "a-long-password", "dni": "66666666Q", "nombre": "Dup", "apellido": "Licado"}
    body[field] = spelled(getattr(existing, field))
    response = client.post("/api/v1/users", json=body, headers=build.headers(admin))
    assert response.status_code == 409 and response.get_json()["field"] == field, response.get_json()


def test_an_e_mail_is_kept_in_one_spelling_and_logs_in_as_typed(client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    headers = build.headers(admin)
    body = {"password": "a-long-password", "nombre": "José", "apellido": "Núñez"}
    composed = client.post("/api/v1/users", json=body | {"email": "Jose\u0301.Nun\u0303ez@GAD.test", "dni": "12-345-678 z"}, headers=headers)
    assert composed.status_code == 201, composed.get_json()
    assert (composed.get_json()["email"], composed.get_json()["dni"]) == ("jos\u00e9.nu\u00f1ez@gad.test", "12345678Z")
    login = client.post("/api/v1/auth/login", json={"email": _fullwidth("JOSE") + "\u0301.nu\u00f1ez@gad.test", "password": "a-long-password"})
    assert login.status_code == 200
    for hidden in ("ana\u200b@gad.test", "ana@gad\u200d.test", "a\u00adna@gad.test"):
        refused = client.post("/api/v1/users", json=body | {"email": hidden, "dni": "87654321X"}, headers=headers)
        assert refused.status_code == 422 and refused.get_json()["errors"][0]["field"] == "body.email", hidden


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


def test_a_password_an_administrador_chose_must_be_changed_before_the_api_does_anything_else(client: FlaskClient, build: Builders) -> None:
    """Whoever chose the password (creation, reset) could otherwise go on using the account: until its owner
    changes it, every API call but who-am-I and their own PATCH is 403 ``password_change_required``."""
    admin, other = build.usuario(3), build.usuario(1)
    body = {"dni": "12345678Z", "nombre": "Nueva", "apellido": "Persona", "email": "nueva@gad.test", "password": "elegida-por-admin", "nivel": 2}
    created = client.post("/api/v1/users", json=body, headers=build.headers(admin))
    assert created.status_code == 201 and created.get_json()["debe_cambiar_clave"] is True
    nueva = created.get_json()
    login = client.post("/api/v1/auth/login", json={"email": "nueva@gad.test", "password": "elegida-por-admin"})
    headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
    for method, path in (("get", "/api/v1/tasks"), ("get", f"/api/v1/users/{other.id}"), ("patch", f"/api/v1/users/{other.id}"), ("get", "/api/v1/efectivos")):
        refused = getattr(client, method)(path, headers=headers, **({"json": {"nombre": "Otro"}} if method == "patch" else {}))
        assert refused.status_code == 403 and refused.mimetype == PROBLEM, path
        assert refused.get_json()["code"] == "password_change_required"
        assert f"PATCH /api/v1/users/{nueva['id']}" in refused.get_json()["detail"]
    assert client.get("/api/v1/users/me", headers=headers).get_json()["debe_cambiar_clave"] is True
    own_other_field = client.patch(f"/api/v1/users/{nueva['id']}", json={"telefono": "600000000"}, headers=headers)
    assert own_other_field.status_code == 403 and own_other_field.get_json()["code"] == "password_change_required"
    assert client.get("/api/v1/auth/sessions", headers=headers).status_code == 200  # one's own sessions stay open
    # "Changing" it to the same password would leave the one the administrador chose in use.
    same = client.patch(f"/api/v1/users/{nueva['id']}", json={"password": "elegida-por-admin", "current_password": "elegida-por-admin"}, headers=headers)
    assert same.status_code == 422 and same.get_json()["errors"][0] | {"field": "body.password", "type": "password_unchanged"} == same.get_json()["errors"][0]
    assert same.get_json()["errors"][0]["mensaje"] == "La nueva contraseña debe ser distinta de la actual."
    assert client.get("/api/v1/users/me", headers=headers).get_json()["debe_cambiar_clave"] is True
    changed = client.patch(f"/api/v1/users/{nueva['id']}", json={"password": "elegida-por-mi-2026", "current_password": "elegida-por-admin"}, headers=headers)
    assert changed.status_code == 200 and changed.get_json()["debe_cambiar_clave"] is False
    login = client.post("/api/v1/auth/login", json={"email": "nueva@gad.test", "password": "elegida-por-mi-2026"})
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {login.get_json()['access_token']}"}).status_code == 200


def test_an_administrador_who_must_change_the_password_cannot_read_websocket_statistics(client: FlaskClient, build: Builders) -> None:
    flagged = build.usuario(3, extra={"debe_cambiar_clave": True})
    refused = client.get("/ws/stats", headers=build.headers(flagged))
    assert refused.status_code == 403 and refused.get_json()["code"] == "password_change_required"
    assert client.get("/ws/stats", headers=build.headers(build.usuario(3))).status_code == 200


def test_a_telegram_bridge_finds_the_usuario_who_wrote_by_telegram_id(client: FlaskClient, build: Builders) -> None:
    """GRUPO_GAD's bot looked users up by telegram_id; GAD answered 422 for the parameter, so a bridge had to page
    through every usuario. Administradores (who see Telegram ids) look one up; anyone else would learn who holds
    an id, and is refused."""
    admin, sup = build.usuario(3), build.usuario(2)
    writer = build.usuario(1, telegram_id=2**62 + 5)
    build.usuario(1, telegram_id=2**62 + 6)
    found = client.get(f"/api/v1/users?telegram_id={2**62 + 5}", headers=build.headers(admin))
    assert found.status_code == 200
    assert [(u["id"], u["telegram_id"]) for u in found.get_json()["items"]] == [(writer.id, 2**62 + 5)]
    assert client.get("/api/v1/users?telegram_id=77", headers=build.headers(admin)).get_json()["total"] == 0
    refused = client.get(f"/api/v1/users?telegram_id={2**62 + 5}", headers=build.headers(sup))
    assert refused.status_code == 403 and refused.mimetype == PROBLEM
    assert client.get("/api/v1/users?telegram_id=0", headers=build.headers(admin)).status_code == 422
