"""Authentication: login, lockout, rate limit, tokens and their revocation, browser sessions, security headers."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from gad.extensions import db
from gad.models import Evento, Tarea, Usuario, utcnow
from tests.builders import PASSWORD, Builders
from tests.conftest import make_app, start_gunicorn, stop_gunicorn
from tests.helpers import TAREA, count_rows
from tests.test_concurrency import _burst


def _login(client: FlaskClient, email: str, password: str = PASSWORD, **kwargs: object):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password}, **kwargs)


def _token(app: Flask, user: Usuario, **claims: object) -> str:
    now = utcnow()
    base = {"sub": str(user.id), "nivel": user.nivel, "tv": 1, "jti": "j1", "iat": int(now.timestamp()), "exp": int((now + timedelta(minutes=5)).timestamp())}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, app.config["SECRET_KEY"], algorithm="HS256")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_login_with_json_returns_bearer_token_that_the_api_accepts(client: FlaskClient, build: Builders) -> None:
    user = build.usuario(2)
    response = _login(client, user.email.upper())
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 30 * 60
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["email"] == user.email


def test_login_accepts_oauth2_password_form(client: FlaskClient, build: Builders) -> None:
    user = build.usuario(1)
    response = client.post("/api/v1/auth/login", data={"username": user.email, "password": PASSWORD, "grant_type": "password"})
    assert response.status_code == 200
    claims = jwt.decode(response.get_json()["access_token"], options={"verify_signature": False})
    assert {"sub", "nivel", "exp", "iat", "jti", "tv"} <= set(claims)
    assert claims["sub"] == str(user.id) and claims["nivel"] == 1
    assert client.post("/api/v1/auth/login", data={"username": user.email, "password": PASSWORD}).status_code == 200  # grant_type optional


def test_the_oauth2_form_refuses_another_grant_and_a_field_given_twice(client: FlaskClient, build: Builders) -> None:
    """grant_type=client_credentials logged in as a password grant (GRUPO_GAD's FastAPI form refused it), and
    ``username`` given twice logged in as the first, whatever a proxy in front had read."""
    user, other = build.usuario(1), build.usuario(1)
    url = "/api/v1/auth/login"
    grant = client.post(url, data={"username": user.email, "password": PASSWORD, "grant_type": "client_credentials"})
    assert grant.status_code == 422 and [e["field"] for e in grant.get_json()["errors"]] == ["body.grant_type"]
    twice = client.post(url, data=f"username={user.email}&password={PASSWORD}&username={other.email}", content_type="application/x-www-form-urlencoded")
    assert twice.status_code == 422 and [(e["field"], e["type"]) for e in twice.get_json()["errors"]] == [("body.username", "repeated")]
    same = client.post(url, data=f"username={user.email}&password={PASSWORD}&username={user.email}", content_type="application/x-www-form-urlencoded")
    assert same.status_code == 200  # the same value twice says nothing two ways
    # Said together with whatever else is wrong, as a query string's.
    both = client.post(url, data=f"username={user.email}&username={other.email}", content_type="application/x-www-form-urlencoded")
    assert both.status_code == 422 and [e["field"] for e in both.get_json()["errors"]] == ["body.username", "body.password"]
    # The page's login form too (its CSRF token is not even looked at: no page sends a field twice).
    page = client.post("/login", data=f"email={user.email}&password={PASSWORD}&email={other.email}", content_type="application/x-www-form-urlencoded")
    assert page.status_code == 422 and "campos repetidos" in page.get_data(as_text=True)


@pytest.mark.parametrize("case", ["wrong_password", "unknown_email", "deactivated"])
def test_login_failures_share_one_generic_401(client: FlaskClient, build: Builders, case: str) -> None:
    user = build.usuario(1, activo=(case != "deactivated"))
    email = "nobody@gad.test" if case == "unknown_email" else user.email
    password = "wrong-password!" if case == "wrong_password" else PASSWORD
    response = _login(client, email, password)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == "Invalid e-mail or password."


def test_five_failures_lock_that_address_out_of_the_account_with_retry_after(client: FlaskClient, build: Builders, app: Flask) -> None:
    user = build.usuario(1)
    for _ in range(5):
        assert _login(client, user.email, "wrong-password!").status_code == 401
    locked = _login(client, user.email)  # even the right password is refused from this address while locked
    assert locked.status_code == 429 and locked.mimetype == "application/problem+json"
    assert int(locked.headers["Retry-After"]) > 14 * 60
    with app.app_context():
        types = [e.event_type for e in db.session.query(Evento).order_by(Evento.id)]
        folded = db.session.execute(db.text("SELECT count FROM security_tallies WHERE kind = 'login_failed'")).scalar_one()
    # Repeated failures from one source are one event plus a count (issue 13 C10); the lockout is its own event.
    assert types.count("login_failed") == 1 and folded == 5 and "account_locked" in types


def test_every_spelling_of_an_address_counts_against_one_lock(client: FlaskClient, build: Builders) -> None:
    """An address logs in however it is typed (case, full-width letters): so every spelling must share its lock,
    or each would bring five more guesses."""
    user = build.usuario(1)
    local, domain = user.email.split("@")
    spellings = [user.email.upper(), "".join(chr(ord(c) + 0xFEE0) for c in local) + "@" + domain, f" {user.email} ", user.email.title(), user.email]
    for spelling in spellings:
        assert _login(client, spelling, "wrong-password!").status_code == 401, spelling
    assert _login(client, spellings[1]).status_code == 429


def test_lock_expires_and_success_resets_the_counter(client: FlaskClient, build: Builders, app: Flask) -> None:
    user = build.usuario(1)
    for _ in range(5):
        assert _login(client, user.email, "wrong-password!").status_code == 401
    assert _login(client, user.email).status_code == 429
    with app.app_context():
        db.session.execute(text("UPDATE login_intentos SET ventana_desde = now() - interval '16 minutes'"))
        db.session.commit()
    assert _login(client, user.email).status_code == 200  # the window passed
    for _ in range(4):
        assert _login(client, user.email, "wrong-password!").status_code == 401
    assert _login(client, user.email).status_code == 200  # 4 failures, then a success: the count restarts
    for _ in range(4):
        assert _login(client, user.email, "wrong-password!").status_code == 401
    assert _login(client, user.email).status_code == 200


def test_a_lock_after_a_success_lasts_the_whole_window(client: FlaskClient, build: Builders, app: Flask) -> None:
    """A success reset the count but not the window it counted in: five failures six minutes after logging in were
    locked for the nine minutes left of that window, not for LOGIN_LOCKOUT_MINUTES."""
    user = build.usuario(1)
    assert _login(client, user.email).status_code == 200
    with app.app_context():
        db.session.execute(text("UPDATE login_intentos SET ventana_desde = ventana_desde - interval '6 minutes'"))
        db.session.commit()
    for _ in range(5):
        assert _login(client, user.email, "wrong-password!").status_code == 401
    locked = _login(client, user.email)
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 14 * 60


def test_login_rate_limit_is_per_client_and_ignores_forged_forwarding_headers(database_url: str, build: Builders) -> None:
    app = make_app(database_url, LOGIN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    for i in range(3):
        assert client.post("/api/v1/auth/login", json={"email": "x@gad.test", "password": "p"}, headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code == 401
    limited = client.post("/api/v1/auth/login", json={"email": "x@gad.test", "password": "p"}, headers={"X-Real-IP": "10.9.9.9"})
    assert limited.status_code == 429
    assert limited.mimetype == "application/problem+json" and "Retry-After" in limited.headers


def test_a_shift_logging_in_at_once_is_let_in_while_other_requests_are_answered(database_url: str, build: Builders, tmp_path: Path) -> None:
    """Logins wait their turn for the password hash (PASSWORD_HASH_THREADS a worker). Each used to wait inside the
    transaction that read its usuario, holding a pooled connection: with sixteen at once, PostgreSQL ended the ones
    that waited longest as idle in transaction and they were answered 503, the database being healthy."""
    officers = [build.usuario(1) for _ in range(16)]
    supervisor = build.usuario(2)
    build.tarea(supervisor)
    headers = build.headers(supervisor)
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path, extra_env={"DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": "1000", "DB_POOL_SIZE": "4"})
    try:

        def send(i: int) -> requests.Response:
            if i == len(officers):  # a supervisor reading the board while the shift logs in
                time.sleep(0.5)
                return requests.get(f"{server.url}/api/v1/tasks?limit=1", headers=headers, timeout=60)
            return requests.post(f"{server.url}/api/v1/auth/login", data={"username": officers[i].email, "password": PASSWORD}, timeout=60)

        answers = _burst(len(officers) + 1, send)
    finally:
        stop_gunicorn(server)
    assert [a.status_code for a in answers] == [200] * (len(officers) + 1), [(a.status_code, a.text[:120]) for a in answers if a.status_code != 200]
    assert all(a.json()["token_type"] == "bearer" for a in answers[:-1])


def test_fly_client_ip_is_used_only_when_proxy_is_trusted(database_url: str) -> None:
    app = make_app(database_url, LOGIN_RATE_LIMIT="2 per minute", TRUST_PROXY=True)
    client = app.test_client()
    body = {"email": "x@gad.test", "password": "p"}
    for _ in range(2):
        assert client.post("/api/v1/auth/login", json=body, headers={"Fly-Client-IP": "203.0.113.1"}).status_code == 401
    assert client.post("/api/v1/auth/login", json=body, headers={"Fly-Client-IP": "203.0.113.1"}).status_code == 429
    assert client.post("/api/v1/auth/login", json=body, headers={"Fly-Client-IP": "203.0.113.2"}).status_code == 401


@pytest.mark.parametrize(
    "mutation",
    [{"exp": None}, {"exp": -60}, {"tv": 0}, {"tv": None}, {"alg": "none"}, {"key": "other"}],
    ids=["no_exp", "expired", "old_token_version", "no_token_version", "unsigned", "other_key"],
)
def test_bad_tokens_are_rejected_with_401(app: Flask, client: FlaskClient, build: Builders, mutation: dict) -> None:
    user = build.usuario(3)
    if "alg" in mutation:
        token = jwt.encode({"sub": str(user.id), "exp": 9999999999, "iat": 1, "jti": "x", "tv": 1}, key="", algorithm="none")
    elif "key" in mutation:
        token = jwt.encode({"sub": str(user.id), "exp": 9999999999, "iat": 1, "jti": "x", "tv": 1}, "k" * 40, algorithm="HS256")
    elif mutation.get("exp") == -60:
        token = _token(app, user, exp=int((utcnow() - timedelta(seconds=60)).timestamp()))
    else:
        token = _token(app, user, **mutation)
    response = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "claims",
    [
        {"jti": "abc\u0000def"},
        {"jti": "j" * 65},
        {"jti": ""},
        {"jti": 7},
        {"sub": "99999999999999999999999"},
        {"sub": "2147483648"},
        {"sub": "-1"},
        {"sub": "0"},
        {"sub": " 1"},
        {"tv": 2**31},
        {"tv": -1},
    ],
    ids=["nul_jti", "long_jti", "empty_jti", "int_jti", "huge_sub", "sub_past_integer", "negative_sub", "zero_sub", "spaced_sub", "huge_tv", "negative_tv"],
)
def test_signed_tokens_whose_claims_no_token_of_ours_carries_are_401_everywhere(
    app: Flask, client: FlaskClient, build: Builders, claims: dict[str, object]
) -> None:
    """A token signed with the key but with a claim ``issue_token`` never writes (a stolen key, a bug in another
    issuer) is invalid: 401 before any statement sees the claim, never a 500 (a NUL) or a 422 (out of range), on
    reads, on the logout that must be able to revoke it, and on a write that checks its caller in its statement."""
    user = build.usuario(3)
    headers = {"Authorization": f"Bearer {_token(app, user, **claims)}"}
    for response in (
        client.get("/api/v1/users/me", headers=headers),
        client.post("/api/v1/auth/logout", headers=headers),
        client.post("/api/v1/tasks", json=TAREA, headers=headers),
    ):
        assert response.status_code == 401, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["detail"] == "The token is invalid."
    assert count_rows(app, Tarea) == 0
    valid = {"Authorization": f"Bearer {_token(app, user, jti='a' * 64, sub=str(user.id))}"}
    assert client.get("/api/v1/users/me", headers=valid).status_code == 200


def test_logout_revokes_only_that_token(client: FlaskClient, build: Builders) -> None:
    user = build.usuario(1)
    first = _login(client, user.email).get_json()["access_token"]
    second = _login(client, user.email).get_json()["access_token"]
    assert client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {first}"}).status_code == 204
    assert client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_password_change_requires_current_password_and_revokes_all_tokens(client: FlaskClient, build: Builders) -> None:
    user = build.usuario(1)
    token = _login(client, user.email).get_json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    wrong = client.patch(f"/api/v1/users/{user.id}", json={"password": "brand-new-password"}, headers=auth)
    assert wrong.status_code == 422 and wrong.get_json()["errors"][0]["field"] == "body.current_password"
    ok = client.patch(f"/api/v1/users/{user.id}", json={"password": "brand-new-password", "current_password": PASSWORD}, headers=auth)
    assert ok.status_code == 200
    assert client.get("/api/v1/users/me", headers=auth).status_code == 401
    assert _login(client, user.email).status_code == 401
    assert _login(client, user.email, "brand-new-password").status_code == 200


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 10"),
        ("user-pw@gad.test", "e-mail"),
        ("\uff35\uff33\uff25\uff32-pw@gad.test", "e-mail"),  # full-width USER: the same address
        (" " * 12, "besides spaces"),
        ("\u200b" * 12, "besides spaces"),
        ("a b c d e f ", "besides spaces"),
        ("\ufe0f" * 12, "besides spaces"),
        ("a" + "".join(chr(0xE0041 + i) for i in range(11)), "besides spaces"),
        ("\u034f\u2061\u180b" * 4, "besides spaces"),
    ],
)
def test_password_policy(client: FlaskClient, build: Builders, password: str, reason: str) -> None:
    admin = build.usuario(3)
    body = {"email": "user-pw@gad.test", "password": password, "dni": "77777777P", "nombre": "Pol", "apellido": "Icy"}
    response = client.post("/api/v1/users", json=body, headers=build.headers(admin))
    assert response.status_code == 422
    assert reason in response.get_json()["errors"][0]["message"]


def test_deactivation_revokes_tokens_and_reactivation_restores_login(client: FlaskClient, build: Builders) -> None:
    admin, user = build.usuario(3), build.usuario(1)
    token = _login(client, user.email).get_json()["access_token"]
    assert client.delete(f"/api/v1/users/{user.id}", headers=build.headers(admin)).status_code == 204
    assert client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert _login(client, user.email).status_code == 401
    refused = client.post(f"/api/v1/users/{user.id}/reactivar", headers=build.headers(build.usuario(2)))
    assert refused.status_code == 403 and refused.get_json()["detail"].startswith("Reactivating usuarios requires nivel 3")
    assert client.post(f"/api/v1/users/{user.id}/reactivar", headers=build.headers(admin)).status_code == 200
    assert _login(client, user.email).status_code == 200


def test_browser_login_sets_httponly_lax_cookie_and_api_needs_csrf_header(client: FlaskClient, build: Builders) -> None:
    user = build.usuario(2)
    token = _csrf(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token, "next": "/api/v1/docs/"})
    assert response.status_code == 302 and response.headers["Location"] == "/api/v1/docs/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/api/v1/users/me").status_code == 200  # cookie works for reads
    rotated = _csrf(client.get("/").get_data(as_text=True))
    assert rotated != token  # a new CSRF token after login: no session fixation
    token = rotated
    body = {"codigo": "WEB-1", "titulo": "Creada desde el navegador", "tipo": "patrullaje"}
    assert client.post("/api/v1/tasks", json=body).status_code == 403  # no CSRF header
    assert client.post("/api/v1/tasks", json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post("/api/v1/tasks", json=body, headers={"X-CSRF-Token": token}).status_code == 201


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_login_never_redirects_off_site(client: FlaskClient, build: Builders, target: str) -> None:
    user = build.usuario(1)
    token = _csrf(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token, "next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/mi"  # an officer's own page, never the target


def test_a_page_asked_for_before_logging_in_is_where_the_login_lands_filters_included(client: FlaskClient, build: Builders) -> None:
    """/tareas?estado=en_curso sent to /login?next=/tareas: the filter the operator followed a link for was lost."""
    user = build.usuario(2)
    asked = client.get("/tareas?estado=en_curso&limit=20")
    assert asked.status_code == 302
    target = parse_qs(urlsplit(asked.headers["Location"]).query)["next"][0]
    assert target == "/tareas?estado=en_curso&limit=20"
    # A question mark that ends a query value is the usuario's, and stays; a bare path gains none.
    assert parse_qs(urlsplit(client.get("/tareas?q=hola?").headers["Location"]).query)["next"] == ["/tareas?q=hola?"]
    assert parse_qs(urlsplit(client.get("/tareas").headers["Location"]).query)["next"] == ["/tareas"]
    token = _csrf(client.get(asked.headers["Location"]).get_data(as_text=True))
    response = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token, "next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/tareas?estado=en_curso&limit=20"


def test_browser_login_failure_rerenders_form_in_spanish(client: FlaskClient, build: Builders) -> None:
    token = _csrf(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "x@gad.test", "password": "nope-nope-nope", "csrf_token": token})
    assert response.status_code == 401 and "Correo o contraseña incorrectos" in response.get_data(as_text=True)


def test_the_login_and_password_forms_refuse_what_the_api_refuses_on_the_form(client: FlaskClient, build: Builders) -> None:
    """A NUL typed (or scripted) into the login form's e-mail reached the lookup and PostgreSQL's driver refused it: a
    500. The password form took a new password with a NUL, which every login then refused: the usuario locked out."""
    user = build.usuario(1)
    token = _csrf(client.get("/login").get_data(as_text=True))
    refused = client.post("/login", data={"email": "a\u0000b@gad.test", "password": "nope-nope-nope", "csrf_token": token})
    assert refused.status_code == 422 and "Quite el carácter nulo (NUL) del texto." in refused.get_data(as_text=True)
    too_long = client.post("/login", data={"email": "x" * 300, "password": "nope-nope-nope", "csrf_token": token})
    assert too_long.status_code == 422 and "como máximo 254 caracteres" in too_long.get_data(as_text=True)
    assert client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token}).status_code == 302
    token = _csrf(client.get("/cambiar-clave").get_data(as_text=True))
    nueva = "Nueva\u0000Clave-2026x"
    changed = client.post("/cambiar-clave", data={"current_password": PASSWORD, "password": nueva, "password2": nueva, "csrf_token": token})
    assert changed.status_code == 422 and 'id="error-password">Quite el carácter nulo (NUL) del texto.' in changed.get_data(as_text=True)
    assert client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).status_code == 200  # unchanged


def test_the_login_page_says_how_long_a_lock_lasts_and_puts_the_cursor_where_to_act(client: FlaskClient, build: Builders, app: Flask) -> None:
    """«Demasiados intentos. Inténtelo más tarde.» left a person guessing for how long; after a refusal the cursor
    stayed nowhere."""
    user = build.usuario(1)
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        token = _csrf(client.get("/login").get_data(as_text=True))
        wrong = client.post("/login", data={"email": user.email, "password": "nope-nope-nope", "csrf_token": token})
        assert wrong.status_code == 401 and re.search(r'id="password"[^>]* autofocus', wrong.get_data(as_text=True))
    token = _csrf(client.get("/login").get_data(as_text=True))
    locked = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    minutos = app.config["LOGIN_LOCKOUT_MINUTES"]
    assert locked.status_code == 429 and f"Inténtelo dentro de {minutos} minutos." in locked.get_data(as_text=True)


def test_the_password_page_says_an_administrador_chose_it_only_when_one_did(client: FlaskClient, build: Builders) -> None:
    """Opened from the top bar to change a password of one's own, the page said "Su contraseña la eligió un
    administrador", which was not so."""
    chosen_by_admin = "Su contraseña la eligió un administrador"
    for debe_cambiar, said in ((False, False), (True, True)):
        user = build.usuario(1, debe_cambiar_clave=debe_cambiar)
        token = _csrf(client.get("/login").get_data(as_text=True))
        assert client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token}).status_code == 302
        page = client.get("/cambiar-clave").get_data(as_text=True)
        assert (chosen_by_admin in page) is said
        client.post("/logout", data={"csrf_token": _csrf(page)})


def test_browser_logout_ends_the_session(client: FlaskClient, build: Builders) -> None:
    user = build.usuario(1)
    token = _csrf(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    page = client.get("/")
    assert page.status_code == 200
    token = _csrf(page.get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/api/v1/users/me").status_code == 401
    # The login page it lands on names, once, whom the server logged out (its script forgets their data).
    assert f'data-olvidar="{user.id}"' in client.get("/login").get_data(as_text=True)
    assert "data-olvidar" not in client.get("/login").get_data(as_text=True)


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("gad_session")
    assert cookie is not None
    return cookie.value


def test_a_login_over_an_open_session_ends_it_and_the_landing_page_forgets_its_usuario(app: Flask, client: FlaskClient, build: Builders) -> None:
    """A login page loaded while someone was signed in let a second person in and left the first session alive:
    a copy of its cookie still answered, and the phone kept the first officer's data."""
    first, second = build.usuario(1), build.usuario(2)
    client.post("/login", data={"email": first.email, "password": PASSWORD, "csrf_token": _csrf(client.get("/login").get_data(as_text=True))})
    copy = app.test_client()
    copy.set_cookie("gad_session", _cookie(client))
    assert copy.get("/api/v1/users/me").get_json()["id"] == first.id
    landed = client.post("/login", data={"email": second.email, "password": PASSWORD, "csrf_token": _csrf(client.get("/login").get_data(as_text=True))})
    assert landed.status_code == 302 and landed.headers["Location"] == "/"
    assert copy.get("/api/v1/users/me").status_code == 401  # the first session ended, every copy of it
    assert client.get("/api/v1/users/me").get_json()["id"] == second.id
    assert client.get("/api/v1/docs").status_code == 200  # a page of its own layout shows no flag, and takes none
    landing = client.get("/")
    assert f'data-relevado="{first.id}"' in landing.get_data(as_text=True)  # once, on the page it lands on
    assert landing.headers["X-GAD-Olvida"] == "1"  # which /mi's service worker never keeps for offline use
    later = client.get("/")
    assert "data-relevado" not in later.get_data(as_text=True) and "X-GAD-Olvida" not in later.headers
    # The same usuario logging in again: the old session ends, and nothing of theirs is forgotten.
    again = app.test_client()
    again.set_cookie("gad_session", _cookie(client))
    client.post("/login", data={"email": second.email, "password": PASSWORD, "csrf_token": _csrf(client.get("/login").get_data(as_text=True))})
    assert again.get("/api/v1/users/me").status_code == 401
    assert "data-relevado" not in client.get("/").get_data(as_text=True)


def test_a_page_drawn_for_another_usuario_gets_401_not_the_session_holders_data(app: Flask, client: FlaskClient, build: Builders) -> None:
    """On a shared phone, an old tab of one officer rode the cookie of the next one to log in: it read their tareas
    under its own name, and its outbox (an SOS) was refused for its stale CSRF token and dropped as a conflict."""
    elena, eduardo = build.usuario(1), build.usuario(1)
    client.post("/login", data={"email": eduardo.email, "password": PASSWORD, "csrf_token": _csrf(client.get("/login").get_data(as_text=True))})
    token = _csrf(client.get("/mi").get_data(as_text=True))
    assert client.get("/api/v1/users/me", headers={"X-GAD-Usuario": str(eduardo.id)}).get_json()["id"] == eduardo.id
    assert client.get("/api/v1/users/me").get_json()["id"] == eduardo.id  # scripts send no such header
    old_tab = {"X-GAD-Usuario": str(elena.id), "X-CSRF-Token": "the-old-sessions-token"}
    read = client.get("/api/v1/tasks", headers=old_tab)
    assert read.status_code == 401 and read.mimetype == "application/problem+json"
    sos = client.post("/api/v1/tasks/emergency", json={"lat": 40.4, "lng": -3.7}, headers=old_tab)
    assert sos.status_code == 401  # "not now" for the outbox, never a refusal: it waits for Elena
    assert client.post(
        "/api/v1/tasks/emergency", json={"lat": 40.4, "lng": -3.7}, headers={"X-GAD-Usuario": str(eduardo.id), "X-CSRF-Token": token}
    ).status_code in (201, 409)
    # A bearer token is whom it names; the header concerns browser sessions only.
    assert client.get("/api/v1/users/me", headers=build.headers(elena) | {"X-GAD-Usuario": str(eduardo.id)}).get_json()["id"] == elena.id


def test_security_headers_on_every_response(client: FlaskClient) -> None:
    for path in ("/health", "/login", "/nope"):
        headers = client.get(path).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"]
    assert "default-src 'self'" in client.get("/login").headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in client.get("/health").headers


def test_hsts_in_production_and_cors_only_for_listed_origins(database_url: str) -> None:
    # Production settings are validated as production (a real audit key; the testing SECRET_KEY is strong).
    app = make_app(database_url, GAD_ENV="production", AUDIT_KEY="audit-" + "Kx7-pQ2w_Rt9" * 4, CORS_ORIGINS=["https://panel.gad.example"])
    client = app.test_client()
    allowed = client.get("/health", headers={"Origin": "https://panel.gad.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://panel.gad.example"
    assert "Strict-Transport-Security" in allowed.headers
    other = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
