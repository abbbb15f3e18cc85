"""What the per-request machinery was made cheaper by keeps its behaviour: metrics, ids, limiter, cached principals,
the request context read without proxies, the request session's scope, hooks moved to where they act."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, Response, current_app, g, request
from flask.globals import request_ctx
from flask.testing import FlaskClient
from flask_sqlalchemy.session import _app_ctx_id
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics
from sqlalchemy import event, inspect, text
from werkzeug.routing import Map, Rule

from gad import LazyBuilderRule
from gad.blueprints.http import created
from gad.blueprints.usuarios import _validated
from gad.extensions import db, limiter
from gad.models import Usuario
from gad.observability import _request_ids
from gad.ratelimit import LIMITER_REQUEST_STATE
from gad.reqctx import current_flask_app, current_g, current_request
from gad.schemas.common import Health
from gad.schemas.usuarios import UsuarioOut
from gad.security import current_user
from tests.builders import PASSWORD, Builders


def _families(registry: CollectorRegistry) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """Every sample family under a ``flask_`` name: (type, help, label names of its samples)."""
    out = {}
    for family in registry.collect():
        if family.name.startswith("flask_"):
            labels = tuple(sorted({key for sample in family.samples for key in sample.labels}))
            out[family.name] = (family.type, family.documentation, labels)
    return out


def test_http_metrics_have_the_exporters_names_labels_help_and_buckets(app_with: Callable[..., Flask]) -> None:
    app = app_with()  # an app of its own: the families' samples must come from these two requests only
    # What prometheus-flask-exporter's own defaults would export for the same requests, on a bare app.
    reference_app = Flask("reference")
    reference_app.add_url_rule("/health", "health.health", lambda: "ok")
    reference = PrometheusMetrics(reference_app, path=None, registry=CollectorRegistry(auto_describe=True), group_by="endpoint")
    reference_app.test_client().get("/health")
    reference_app.test_client().get("/nope")

    ours = app.extensions["gad_metrics"]
    client = app.test_client()
    before = ours.registry.get_sample_value("flask_http_request_duration_seconds_count", {"method": "GET", "endpoint": "health.health", "status": "200"}) or 0
    client.get("/health")
    client.get("/nope")

    assert _families(ours.registry) == _families(reference.registry)
    labels = {"method": "GET", "endpoint": "health.health", "status": "200"}
    assert ours.registry.get_sample_value("flask_http_request_duration_seconds_count", labels) == before + 1
    assert ours.registry.get_sample_value("flask_http_request_total", {"method": "GET", "status": "404"}) >= 1
    assert ours.registry.get_sample_value("flask_http_request_duration_seconds_count", {"method": "GET", "endpoint": "None", "status": "404"}) >= 1
    buckets = {s.labels["le"] for f in ours.registry.collect() if f.name == "flask_http_request_duration_seconds" for s in f.samples if "le" in s.labels}
    reference_buckets = {
        s.labels["le"] for f in reference.registry.collect() if f.name == "flask_http_request_duration_seconds" for s in f.samples if "le" in s.labels
    }
    assert buckets == reference_buckets


def test_generated_request_ids_are_32_hex_digits_unique_and_differ_after_a_fork() -> None:
    ids = [_request_ids.next() for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker forked from its master
        os.write(write, _request_ids.next().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child[:16] != _request_ids.next()[:16]


def test_flask_limiter_keeps_its_request_state_where_gad_looks_for_it(app: Flask) -> None:
    # GAD runs Flask-Limiter's after-request and teardown hooks only where a limit was checked, found by this
    # attribute; a release that moved it would silently skip them.
    with app.test_request_context("/api/v1/auth/login", method="POST"):
        assert not hasattr(request_ctx._get_current_object(), LIMITER_REQUEST_STATE)
        limiter.context  # noqa: B018 - what a limit check does first
        assert hasattr(request_ctx._get_current_object(), LIMITER_REQUEST_STATE)


def test_a_cached_principal_joins_the_session_as_if_loaded_and_only_when_the_request_opens_it(app: Flask, build: Builders, listener_connected: None) -> None:
    usuario = build.usuario(2)
    headers = build.headers(usuario)
    client = app.test_client()
    assert client.get("/api/v1/users/me", headers=headers).status_code == 200  # verified: the cache is filled
    statements: list[str] = []
    with app.app_context():

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            with app.test_request_context("/api/v1/users/me", headers=headers):
                me = current_user()
                assert me.id == usuario.id and me.email == usuario.email
                assert not db.session.registry.has()  # nothing opened a session for this read
                assert inspect(me).detached and inspect(me).key is not None
                # The first use of the session finds the usuario in it, clean, as a query would have left it.
                assert db.session.get(Usuario, usuario.id) is me
                state = inspect(me)
                assert state.persistent and not state.modified and me not in db.session.dirty
                assert g.get("gad_waiting_for_session") is None
                db.session.remove()
            response = client.get("/api/v1/users/me", headers=headers)
            assert response.status_code == 200 and response.get_json()["id"] == usuario.id
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
    assert statements == []  # neither the cached read nor the session it joined sent a statement


def test_health_body_written_by_hand_is_what_json_dumps_writes_and_what_the_schema_documents(client: FlaskClient) -> None:
    body = client.get("/health").get_data(as_text=True)
    assert json.dumps(json.loads(body)) == body
    Health.model_validate_json(body)


def test_url_builders_compiled_on_first_use_build_what_werkzeug_builds(app: Flask) -> None:
    plain = Map(
        [Rule(r.rule, endpoint=r.endpoint, methods=r.methods, defaults=r.defaults, websocket=r.websocket) for r in app.url_map.iter_rules()],
        converters=app.url_map.converters,
    )
    ours, reference = app.url_map.bind("gad.test"), plain.bind("gad.test")
    rules = list(app.url_map.iter_rules())
    assert all(isinstance(r, LazyBuilderRule) for r in rules) and len(rules) > 50
    for rule in rules:
        values = {name: 7 for name in rule.arguments}
        for extra in ({}, {"q": "a b"}):  # known arguments only, then an unknown one appended as a query
            assert ours.build(rule.endpoint, values | extra, method=next(iter(rule.methods or {"GET"}))) == reference.build(
                rule.endpoint, values | extra, method=next(iter(rule.methods or {"GET"}))
            )


def test_request_context_readers_return_the_objects_flasks_proxies_stand_for(app: Flask) -> None:
    with app.test_request_context("/health"):
        assert current_request() is request._get_current_object()  # type: ignore[attr-defined]
        assert current_g() is g._get_current_object()  # type: ignore[attr-defined]
        assert current_flask_app() is current_app._get_current_object()  # type: ignore[attr-defined]
    with pytest.raises(LookupError):
        current_request()


def test_the_request_sessions_scope_is_flask_sqlalchemys_own_and_an_opened_session_is_removed_at_the_end(app: Flask) -> None:
    with app.app_context():
        assert db.session.registry.scopefunc() == _app_ctx_id()
        session = db.session()
        session.execute(text("SELECT 1"))
        assert session.in_transaction()
        key = db.session.registry.scopefunc()
    assert key not in db.session.registry.registry and not session.in_transaction()
    with pytest.raises(RuntimeError, match="application context"):
        db.session.registry.scopefunc()


def _browser_login(client: FlaskClient, email: str) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True))
    assert token is not None
    assert client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)}).status_code == 302


def test_someone_who_must_change_the_password_is_sent_there_from_every_page_and_told_so_by_the_api(app: Flask, build: Builders) -> None:
    usuario = build.usuario(2, extra={"debe_cambiar_clave": True})  # a supervisor: the report and planning pages too
    client = app.test_client()
    _browser_login(client, usuario.email)
    for path in ("/", "/mi", "/tareas", "/efectivos", "/informes", "/planificacion"):  # every page blueprint's pages
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == f"/cambiar-clave?next={path}", path
    assert client.get("/cambiar-clave").status_code == 200
    me = client.get("/api/v1/users/me")  # the API answers who it is: its clients cannot show the form
    assert me.status_code == 200 and me.get_json()["debe_cambiar_clave"] is True
    assert client.get("/api/v1/tasks").get_json()["code"] == "password_change_required"  # and nothing else
    other = app.test_client()
    _browser_login(other, build.usuario(1).email)
    assert other.get("/mi").status_code == 200


def test_the_change_password_page_says_too_many_attempts_as_the_login_form_does(app_with: Callable[..., Flask], build: Builders) -> None:
    """Guessing the current password on /cambiar-clave is throttled as logins are; past the limit the page answers
    429 with Retry-After and says so, not a 422 "could not change it"."""
    app = app_with(LOGIN_MAX_FAILURES=2)
    usuario = build.usuario(2, extra={"debe_cambiar_clave": True})
    client = app.test_client()
    _browser_login(client, usuario.email)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/cambiar-clave").get_data(as_text=True))
    assert token is not None
    form = {"csrf_token": token.group(1), "current_password": "not-the-password", "password": "una-clave-nueva-2026", "password2": "una-clave-nueva-2026"}
    statuses = [client.post("/cambiar-clave", data=form) for _ in range(3)]
    assert [response.status_code for response in statuses] == [422, 422, 429]
    assert int(statuses[-1].headers["Retry-After"]) > 0
    assert "Demasiados intentos" in statuses[-1].get_data(as_text=True)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"extra": {"debe_cambiar_clave": True}}, {"extra": {"otro": 1}}, {"telefono": "+34 600 000 000", "telegram_id": 2**62, "nombre": "Ñandú 🚓"}],
)
def test_a_usuario_serialises_alike_from_its_loaded_values_and_through_its_attributes(app: Flask, build: Builders, overrides: dict[str, Any]) -> None:
    usuario = build.usuario(2, **overrides)
    with app.app_context():
        fresh = db.session.get(Usuario, usuario.id)
        assert fresh is not None
        assert _validated(fresh).model_dump_json() == UsuarioOut.model_validate(fresh).model_dump_json()
        fresh.nombre = "Cambiado"  # changed in the session, not flushed: both paths see the new value
        fresh.debe_cambiar_clave = not fresh.debe_cambiar_clave
        assert _validated(fresh).model_dump_json() == UsuarioOut.model_validate(fresh).model_dump_json()
        assert _validated(fresh).nombre == "Cambiado"
        db.session.rollback()  # expires it: the values are gone from the instance, the attribute path reloads them
        assert "nombre" not in vars(fresh)
        assert _validated(fresh).nombre == usuario.nombre
        assert _validated(fresh).model_dump_json() == UsuarioOut.model_validate(fresh).model_dump_json()


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "strict-origin-when-cross-origin"}


@pytest.mark.parametrize(
    ("method", "path", "status", "html"),
    [
        ("GET", "/health", 200, False),
        ("HEAD", "/health", 200, False),
        ("GET", "/login", 200, True),
        ("GET", "/", 302, True),  # a page, signed out: the redirect to /login (an HTML body)
        ("GET", "/nope", 404, False),
        ("GET", "/api/v1/users/me", 401, False),
        ("POST", "/health", 405, False),
    ],
)
def test_every_response_leaves_with_each_security_header_and_one_request_id(client: FlaskClient, method: str, path: str, status: int, html: bool) -> None:
    response = client.open(path, method=method)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.getlist(name) == [value], name
    assert response.headers.getlist("Content-Security-Policy") == (
        [
            "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
        ]
        if html
        else []
    )
    (request_id,) = response.headers.getlist("X-Request-ID")
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert "Access-Control-Allow-Origin" not in response.headers


def test_answers_to_requests_with_credentials_are_never_stored_and_chosen_caching_is_kept(client: FlaskClient, build: Builders) -> None:
    """A shared terminal's disk cache or back button must not show a usuario's data after logout."""
    usuario = build.usuario(3)
    headers = build.headers(usuario)
    for path in ("/api/v1/users/me", "/api/v1/tasks", "/api/v1/notificaciones", "/api/v1/tasks/999999"):
        assert client.get(path, headers=headers).headers.getlist("Cache-Control") == ["no-store"], path
    _browser_login(client, usuario.email)
    for path in ("/", "/mi", "/tareas", "/api/v1/users/me"):
        assert client.get(path).headers.getlist("Cache-Control") == ["no-store"], path
    static = client.get("/static/js/api.js")
    static.close()
    assert static.headers["Cache-Control"] == "no-cache"  # revalidated by its ETag, not fetched again
    assert client.get("/api/v1/openapi.json").headers["Cache-Control"] in {"public, no-cache", "no-cache, public"}
    assert "Cache-Control" not in client.application.test_client().get("/health").headers  # no credentials
    # The login's answer holds a token although its request carried none (RFC 6749 5.1).
    login = client.application.test_client().post("/api/v1/auth/login", json={"email": usuario.email, "password": PASSWORD})
    assert login.status_code == 200 and login.headers.getlist("Cache-Control") == ["no-store"]


def test_a_views_own_security_headers_win_and_ours_replace_its_request_id_and_cors(app_with: Callable[..., Flask]) -> None:
    app = app_with(CORS_ORIGINS=["https://panel.gad.example"])
    own = {
        "X-Frame-Options": "SAMEORIGIN",
        "Content-Security-Policy": "default-src 'none'",
        "Vary": "Cookie",
        "x-request-id": "the-views",
        "access-control-allow-origin": "*",
    }
    app.add_url_rule("/_own", "own", lambda: Response("<p>propia</p>", mimetype="text/html", headers=own))
    client = app.test_client()

    plain = client.get("/_own", headers={"X-Request-ID": "proxy-7"})
    assert plain.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"] and plain.headers.getlist("Content-Security-Policy") == ["default-src 'none'"]
    assert plain.headers.getlist("X-Content-Type-Options") == ["nosniff"] and plain.headers.getlist("Referrer-Policy") == ["strict-origin-when-cross-origin"]
    (plain_id,) = plain.headers.getlist("X-Request-ID")
    assert re.fullmatch(r"[0-9a-f]{32}", plain_id)  # the id the request was logged under: neither the view's nor the client's
    assert plain.headers.getlist("Access-Control-Allow-Origin") == ["*"] and plain.headers.getlist("Vary") == ["Cookie"]  # no allowed Origin: untouched

    cross = client.get("/_own", headers={"Origin": "https://panel.gad.example", "X-Request-ID": "bad id with spaces"})
    assert cross.headers.getlist("Access-Control-Allow-Origin") == ["https://panel.gad.example"] and cross.headers.getlist("Vary") == ["Cookie, Origin"]
    assert cross.headers["Access-Control-Expose-Headers"] == "ETag, Location, X-Request-ID, Retry-After"
    (request_id,) = cross.headers.getlist("X-Request-ID")
    assert re.fullmatch(r"[0-9a-f]{32}", request_id) and request_id != plain_id


def test_an_allowed_origins_answer_still_varies_with_the_session_cookie(app_with: Callable[..., Flask]) -> None:
    """Flask adds ``Vary: Cookie`` when a request reads the session (the login form does); CORS adds Origin to it
    rather than replacing it, or a shared cache could hand one person's cookie-dependent answer to another."""
    app = app_with(CORS_ORIGINS=["https://panel.gad.example"])
    client = app.test_client()
    plain = client.get("/login")
    cross = client.get("/login", headers={"Origin": "https://panel.gad.example"})
    assert plain.headers.getlist("Vary") == ["Cookie"], plain.headers
    assert cross.headers.getlist("Vary") == ["Cookie, Origin"] and cross.headers["Access-Control-Allow-Origin"] == "https://panel.gad.example", cross.headers


def test_a_cors_preflight_to_the_api_is_answered_without_credentials_and_reveals_nothing(app_with: Callable[..., Flask], build: Builders) -> None:
    """Browsers send the preflight of a cross-origin API call without its Authorization header and give up on
    anything but a 2xx; the call itself still needs its token."""
    app = app_with(CORS_ORIGINS=["https://panel.gad.example"])
    client = app.test_client()
    tarea = build.tarea(build.usuario(3))
    preflight = {"Origin": "https://panel.gad.example", "Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "authorization, if-match"}
    for path in ("/api/v1/tasks", f"/api/v1/tasks/{tarea.id}", "/api/v1/users/me"):
        answer = client.options(path, headers=preflight)
        assert answer.status_code == 200 and answer.get_data() == b"", (path, answer.status_code, answer.get_data())
        assert answer.headers["Access-Control-Allow-Origin"] == "https://panel.gad.example"
        assert "Authorization" in answer.headers["Access-Control-Allow-Headers"] and "PATCH" in answer.headers["Access-Control-Allow-Methods"]
    call = client.get(f"/api/v1/tasks/{tarea.id}", headers={"Origin": "https://panel.gad.example"})
    assert call.status_code == 401 and call.headers["Access-Control-Allow-Origin"] == "https://panel.gad.example"


def test_flask_limiters_after_request_hook_runs_for_each_limited_request_and_no_other(app_with: Callable[..., Flask]) -> None:
    app = app_with(LOGIN_RATE_LIMIT="2 per minute")
    client = app.test_client()
    body = {"email": "nadie@gad.test", "password": "p"}
    assert client.post("/api/v1/auth/login", json=body).status_code == 401  # binds Flask-Limiter to this app
    hook = limiter._after
    assert hook is not None
    seen: list[tuple[str | None, int]] = []

    def counted(response: Response) -> Response:  # the real hook, run as before, with a note of where it ran
        seen.append((request.endpoint, response.status_code))
        return hook(response)

    limiter._after = counted
    try:
        assert client.post("/api/v1/auth/login", json=body).status_code == 401
        assert client.post("/api/v1/auth/login", json=body).status_code == 429  # refused by the check: still run
        assert client.get("/health").status_code == 200 and client.get("/nope").status_code == 404
        assert client.post("/login", data={"email": "nadie@gad.test", "password": "p"}).status_code == 429  # the form shares it
    finally:
        limiter._after = hook
    assert seen == [("auth.login", 401), ("auth.login", 429), ("pages.login_submit", 429)]


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("/api/v1/tasks/17", "/api/v1/tasks/17"),  # a URI path already: sent as it is
        ("/tareas/ñandú 1", "/tareas/%C3%B1and%C3%BA%201"),  # an IRI: converted as werkzeug converts it
        ("/login?next=/tareas?q=hola", "/login?next=/tareas?q=hola"),
        ("https://ejemplo.es/ruta/á", "https://ejemplo.es/ruta/%C3%A1"),
        # A script root of "//…" (SCRIPT_NAME, which a trusted proxy's client can set) is a host to a URL parser.
        ("///otro.example/api/v1/tasks/1", "/otro.example/api/v1/tasks/1"),
        ("//Gad/api/v1/tasks/2", "//gad/api/v1/tasks/2"),
    ],
)
def test_a_location_leaves_as_werkzeug_would_send_it(app: Flask, given: str, sent: str) -> None:
    # http.created skips werkzeug's IRI conversion for a Location that is a URI path already (a create's cost).
    with app.test_request_context():
        response = created("{}", given, 1)
        werkzeug_would = Response("{}", status=201, headers={"ETag": '"1"', "Location": given}, mimetype="application/json")
        headers = response.get_wsgi_headers(request.environ)
        expected = werkzeug_would.get_wsgi_headers(request.environ)
    assert headers.get_all("Location") == [sent] == expected.get_all("Location")
    assert sorted(headers.items()) == sorted(expected.items())
    assert response.headers["Location"] == given  # the response itself keeps what the view set
    assert isinstance(response, app.response_class)  # so Flask takes it as it is, converting nothing
