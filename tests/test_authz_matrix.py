"""Authorization matrix generated from the app's URL map: every endpoint × every kind of caller.

A new route without an entry in ``ENDPOINTS`` fails ``test_every_route_has_a_matrix_entry``, so each
issue that adds endpoints must say here who may call them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from gad.models import TokenRevocado, utcnow
from tests.builders import PASSWORD, Builders
from tests.wsclient import WsClient

ROLES = ("anonymous", "efectivo", "supervisor", "administrador", "deactivated", "expired", "wrong_key", "revoked")
INVALID_CREDENTIALS = ("deactivated", "expired", "wrong_key", "revoked")


@dataclass
class World:
    admin: Any
    supervisor: Any
    efectivo_user: Any
    victim: Any
    efectivo: Any
    other_efectivo: Any
    tarea: Any
    ajena: Any
    turno: Any
    licencia: Any
    alerta: Any = None
    notificacion: Any = None


# Who may call each endpoint:
#   public      — everyone, credentials or not (invalid tokens are ignored)
#   auth        — any active authenticated usuario
#   supervisor  — nivel 2+
#   admin       — nivel 3
#   page        — browser page: anonymous is redirected to /login, authenticated sees it
#   csrf_login  — the login form: without the session's CSRF token nobody is logged in; the usuario already signed
#                 in as the e-mail typed is sent back to the board (302), anyone else gets the form again (400)
#   csrf_logout — without a session there is nothing to end (302 to /login); with one, a form without its CSRF token
#                 (a tab of an earlier session) ends nothing and asks again (400, the page)
#   csrf_page   — a dashboard form: anonymous is redirected to /login, others need the CSRF token
#   page_supervisor / page_admin — dashboard pages for nivel 2+ / 3 (lower niveles get 403)
#   recipient   — only the usuario a notification was sent to (the efectivo's in the world), others 403
Request = Callable[[World], tuple[str, dict[str, Any]]]


def _no_body(path: str) -> Request:
    return lambda w: (path.format(w=w), {})


def _json(path: str, body: Callable[[World], dict[str, Any]]) -> Request:
    return lambda w: (path.format(w=w), {"json": body(w)})


def _tarea_body(w: World) -> dict[str, Any]:
    return {"codigo": "MTX-NEW", "titulo": "Tarea de la matriz", "tipo": "patrullaje", "prioridad": 2}


def _turno_body(w: World) -> dict[str, Any]:
    return {"efectivo_id": w.other_efectivo.id, "inicio": "2030-01-01T08:00:00Z", "fin": "2030-01-01T16:00:00Z"}


def _usuario_body(w: World) -> dict[str, Any]:
    return {"email": "matrix-new@gad.test", "password": "a-long-password", "dni": "55555555M", "nombre": "Nuevo", "apellido": "Usuario"}


ENDPOINTS: dict[str, tuple[str, Request]] = {
    "GET /health": ("public", _no_body("/health")),
    "GET /health/ready": ("public", _no_body("/health/ready")),
    "GET /metrics": ("public", _no_body("/metrics")),
    "GET /static/<path:filename>": ("public", _no_body("/static/css/app.css")),
    "GET /api/v1/openapi.json": ("public", _no_body("/api/v1/openapi.json")),
    "GET /api/v1/docs": ("public", _no_body("/api/v1/docs")),
    "GET /api/v1/docs/": ("public", _no_body("/api/v1/docs/")),
    "GET /login": ("public", _no_body("/login")),
    "POST /login": ("csrf_login", lambda w: ("/login", {"data": {"email": w.admin.email, "password": "x"}})),
    "POST /logout": ("csrf_logout", lambda w: ("/logout", {"data": {}})),
    "GET /": ("page", _no_body("/")),
    "GET /tareas/<int:tarea_id>": ("page", _no_body("/tareas/{w.tarea.id}")),
    "GET /tareas/nueva": ("page_supervisor", _no_body("/tareas/nueva")),
    "POST /tareas/nueva": ("csrf_page", lambda w: ("/tareas/nueva", {"data": {"codigo": "PAGE-1"}})),
    "GET /cambiar-clave": ("page", _no_body("/cambiar-clave")),
    "POST /cambiar-clave": ("csrf_page", lambda w: ("/cambiar-clave", {"data": {"password": "x"}})),
    "GET /efectivos": ("page", _no_body("/efectivos")),
    "GET /mapa": ("page", _no_body("/mapa")),
    "GET /tareas": ("page", _no_body("/tareas?estado=programada")),
    "GET /mi": ("page", _no_body("/mi")),
    "GET /mi/sw.js": ("public", _no_body("/mi/sw.js")),
    "GET /usuarios": ("page_admin", _no_body("/usuarios")),
    "POST /api/v1/auth/login": ("public", _json("/api/v1/auth/login", lambda w: {"email": w.admin.email, "password": PASSWORD})),
    "POST /api/v1/auth/logout": ("auth", _no_body("/api/v1/auth/logout")),
    "GET /api/v1/auth/sessions": ("auth", _no_body("/api/v1/auth/sessions")),
    # Only one's own sessions (an administrador: anyone's); another's id answers 404 like a missing one.
    "DELETE /api/v1/auth/sessions/<int:sesion_id>": ("auth", _no_body("/api/v1/auth/sessions/987654")),
    "POST /api/v1/auth/logout-all": ("auth", _no_body("/api/v1/auth/logout-all")),
    "GET /api/v1/users/me": ("auth", _no_body("/api/v1/users/me")),
    "GET /api/v1/users": ("supervisor", _no_body("/api/v1/users")),
    "POST /api/v1/users": ("admin", _json("/api/v1/users", _usuario_body)),
    "GET /api/v1/users/<int:usuario_id>": ("supervisor", _no_body("/api/v1/users/{w.victim.id}")),
    "PATCH /api/v1/users/<int:usuario_id>": ("admin", _json("/api/v1/users/{w.victim.id}", lambda w: {"nivel": 2})),
    "PUT /api/v1/users/<int:usuario_id>": ("admin", _json("/api/v1/users/{w.victim.id}", lambda w: {"telefono": "600000000"})),
    "DELETE /api/v1/users/<int:usuario_id>": ("admin", _no_body("/api/v1/users/{w.victim.id}")),
    "POST /api/v1/users/<int:usuario_id>/reactivar": ("admin", _no_body("/api/v1/users/{w.victim.id}/reactivar")),
    "POST /api/v1/users/<int:usuario_id>/logout-all": ("admin", _no_body("/api/v1/users/{w.victim.id}/logout-all")),
    "GET /api/v1/efectivos": ("auth", _no_body("/api/v1/efectivos")),
    "POST /api/v1/efectivos": ("supervisor", _json("/api/v1/efectivos", lambda w: {"codigo_interno": "EF-MTX", "nombre": "Agente Matriz"})),
    "GET /api/v1/efectivos/<int:efectivo_id>": ("supervisor", _no_body("/api/v1/efectivos/{w.other_efectivo.id}")),
    "PATCH /api/v1/efectivos/<int:efectivo_id>": ("supervisor", _json("/api/v1/efectivos/{w.other_efectivo.id}", lambda w: {"rango": "Sargento"})),
    "DELETE /api/v1/efectivos/<int:efectivo_id>": ("supervisor", _no_body("/api/v1/efectivos/{w.other_efectivo.id}")),
    "POST /api/v1/efectivos/<int:efectivo_id>/disponibilidad": (
        "supervisor",
        _json("/api/v1/efectivos/{w.other_efectivo.id}/disponibilidad", lambda w: {"estado": "no_disponible"}),
    ),
    "PUT /api/v1/efectivos/<int:efectivo_id>/ubicacion": (
        "supervisor",
        _json("/api/v1/efectivos/{w.other_efectivo.id}/ubicacion", lambda w: {"lat": 40.4, "lng": -3.7}),
    ),
    "GET /api/v1/tasks": ("auth", _no_body("/api/v1/tasks")),
    "POST /api/v1/tasks": ("supervisor", _json("/api/v1/tasks", _tarea_body)),
    "GET /api/v1/tasks/<int:tarea_id>": ("supervisor", _no_body("/api/v1/tasks/{w.ajena.id}")),
    "PATCH /api/v1/tasks/<int:tarea_id>": ("supervisor", _json("/api/v1/tasks/{w.tarea.id}", lambda w: {"prioridad": 4})),
    "PUT /api/v1/tasks/<int:tarea_id>": ("supervisor", _json("/api/v1/tasks/{w.tarea.id}", lambda w: {"prioridad": 5})),
    "DELETE /api/v1/tasks/<int:tarea_id>": ("admin", _no_body("/api/v1/tasks/{w.tarea.id}")),
    "POST /api/v1/tasks/<int:tarea_id>/estado": ("supervisor", _json("/api/v1/tasks/{w.ajena.id}/estado", lambda w: {"estado": "en_curso"})),
    "POST /api/v1/tasks/<int:tarea_id>/efectivos": (
        "supervisor",
        _json("/api/v1/tasks/{w.tarea.id}/efectivos", lambda w: {"efectivo_ids": [w.other_efectivo.id]}),
    ),
    "DELETE /api/v1/tasks/<int:tarea_id>/efectivos/<int:efectivo_id>": (
        "supervisor",
        _no_body("/api/v1/tasks/{w.tarea.id}/efectivos/{w.efectivo.id}"),
    ),
    "GET /api/v1/tasks/<int:tarea_id>/historial": ("supervisor", _no_body("/api/v1/tasks/{w.ajena.id}/historial")),
    "POST /api/v1/tasks/emergency": ("auth", _json("/api/v1/tasks/emergency", lambda w: {"lat": 40.4, "lng": -3.7})),
    "GET /api/v1/efectivos/cercanos": ("supervisor", _no_body("/api/v1/efectivos/cercanos?lat=40.4&lng=-3.7")),
    "GET /api/v1/stats/user/<int:usuario_id>": ("supervisor", _no_body("/api/v1/stats/user/{w.victim.id}")),
    "GET /api/v1/dashboard/resumen": ("supervisor", _no_body("/api/v1/dashboard/resumen")),
    "GET /api/v1/cache/stats": ("admin", _no_body("/api/v1/cache/stats")),
    "POST /api/v1/cache/clear": ("admin", _no_body("/api/v1/cache/clear")),
    "GET /ws/stats": ("admin", _no_body("/ws/stats")),
    "GET /api/v1/eventos": ("admin", _no_body("/api/v1/eventos?limit=5")),
    "GET /api/v1/turnos": ("auth", _no_body("/api/v1/turnos")),
    "POST /api/v1/turnos": ("supervisor", _json("/api/v1/turnos", _turno_body)),
    "POST /api/v1/turnos/comprobar": ("supervisor", _json("/api/v1/turnos/comprobar", _turno_body)),
    "GET /api/v1/turnos/<int:turno_id>": ("supervisor", _no_body("/api/v1/turnos/{w.turno.id}")),
    "PATCH /api/v1/turnos/<int:turno_id>": ("supervisor", _json("/api/v1/turnos/{w.turno.id}", lambda w: {"tipo": "guardia"})),
    "DELETE /api/v1/turnos/<int:turno_id>": ("supervisor", _no_body("/api/v1/turnos/{w.turno.id}")),
    "GET /api/v1/licencias": ("auth", _no_body("/api/v1/licencias")),
    "POST /api/v1/licencias": (
        "supervisor",
        _json("/api/v1/licencias", lambda w: _turno_body(w) | {"tipo": "formacion", "inicio": "2031-01-01T00:00:00Z", "fin": "2031-01-02T00:00:00Z"}),
    ),
    "DELETE /api/v1/licencias/<int:licencia_id>": ("supervisor", _no_body("/api/v1/licencias/{w.licencia.id}")),
    "GET /api/v1/planificacion/semana": ("supervisor", _no_body("/api/v1/planificacion/semana")),
    "GET /planificacion": ("page_supervisor", _no_body("/planificacion")),
    "GET /api/v1/reportes/tiempos": ("supervisor", _no_body("/api/v1/reportes/tiempos")),
    "GET /api/v1/reportes/carga": ("supervisor", _no_body("/api/v1/reportes/carga?formato=csv")),
    "GET /api/v1/reportes/resultados": ("supervisor", _no_body("/api/v1/reportes/resultados?agrupar=prioridad")),
    "GET /api/v1/reportes/tareas.csv": ("supervisor", _no_body("/api/v1/reportes/tareas.csv")),
    "GET /informes": ("page_supervisor", _no_body("/informes")),
    "GET /api/v1/auditoria/export": ("admin", _no_body("/api/v1/auditoria/export")),
    "GET /api/v1/eventos/recientes": ("auth", _no_body("/api/v1/eventos/recientes?limit=5")),
    "GET /api/v1/notificaciones": ("auth", _no_body("/api/v1/notificaciones?no_leidas=true")),
    # The world's notification belongs to the efectivo; supervisors read anyone's.
    "GET /api/v1/notificaciones/<int:notificacion_id>": ("auth", _no_body("/api/v1/notificaciones/{w.notificacion.id}")),
    "POST /api/v1/notificaciones/<int:notificacion_id>/ack": (
        "recipient",
        _json("/api/v1/notificaciones/{w.notificacion.id}/ack", lambda w: {"respuesta": "acepto"}),
    ),
    "GET /api/v1/alertas": ("supervisor", _no_body("/api/v1/alertas")),
    "POST /api/v1/alertas": (
        "supervisor",
        _json("/api/v1/alertas", lambda w: {"tipo": "aviso", "texto": "Prueba", "destino": "usuarios", "usuario_ids": [w.victim.id]}),
    ),
    "GET /api/v1/alertas/<int:alerta_id>": ("supervisor", _no_body("/api/v1/alertas/{w.alerta.id}")),
    "POST /api/v1/alertas/<int:alerta_id>/reenviar": ("supervisor", _no_body("/api/v1/alertas/{w.alerta.id}/reenviar")),
    "POST /api/v1/alertas/<int:alerta_id>/cerrar": ("supervisor", _no_body("/api/v1/alertas/{w.alerta.id}/cerrar")),
    # The handshake of a real socket is exercised in test_live_stream.py; here only refusals are checked.
    "GET /ws/connect": (
        "ws",
        lambda w: (
            "/ws/connect",
            {"headers": {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}},
        ),
    ),
}

RANK = {"efectivo": 1, "supervisor": 2, "administrador": 3}
REQUIRED = {"auth": 1, "supervisor": 2, "admin": 3}


def _routes(app: Flask) -> set[str]:
    keys = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods or ():
            if method in {"HEAD", "OPTIONS"}:
                continue
            keys.add(f"{method} {rule.rule}")
    return keys


def test_every_route_has_a_matrix_entry(app: Flask) -> None:
    missing = _routes(app) - set(ENDPOINTS)
    assert not missing, f"routes without an authorization entry: {sorted(missing)}"
    stale = set(ENDPOINTS) - _routes(app)
    assert not stale, f"matrix entries for routes that no longer exist: {sorted(stale)}"


def _world(build: Builders) -> World:
    admin = build.usuario(3)
    supervisor = build.usuario(2)
    efectivo_user = build.usuario(1)
    victim = build.usuario(1)
    efectivo = build.efectivo(usuario_id=efectivo_user.id)
    other = build.efectivo()
    tarea = build.tarea(admin)
    build.asignacion(tarea, efectivo)
    # A tarea the efectivo user has nothing to do with: what they may not see or move.
    ajena = build.tarea(admin)
    # Agenda of the other efectivo: what the efectivo user may not read or change.
    turno = build.turno(other, utcnow() + timedelta(days=3))
    licencia = build.licencia(other, utcnow() + timedelta(days=10))
    alerta = build.alerta(supervisor, total=1)
    notificacion = build.notificacion(efectivo_user, alerta_id=alerta.id)
    return World(admin, supervisor, efectivo_user, victim, efectivo, other, tarea, ajena, turno, licencia, alerta, notificacion)


def _credentials(app: Flask, build: Builders, world: World, role: str) -> dict[str, str]:
    if role == "anonymous":
        return {}
    if role in RANK:
        user = {"efectivo": world.efectivo_user, "supervisor": world.supervisor, "administrador": world.admin}[role]
        return build.headers(user)
    secret = app.config["SECRET_KEY"]
    now = utcnow()
    if role == "deactivated":
        token = build.token(build.usuario(3, activo=False))
    elif role == "expired":
        claims = {"sub": str(world.admin.id), "nivel": 3, "tv": 1, "jti": "expired", "iat": int((now - timedelta(hours=2)).timestamp())}
        claims["exp"] = int((now - timedelta(hours=1)).timestamp())
        token = jwt.encode(claims, secret, algorithm="HS256")
    elif role == "wrong_key":
        claims = {
            "sub": str(world.admin.id),
            "nivel": 3,
            "tv": 1,
            "jti": "forged",
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=5)).timestamp()),
        }
        token = jwt.encode(claims, "another-key-" + "y" * 40, algorithm="HS256")
    else:  # revoked
        token = build.token(world.admin)
        with app.app_context():
            claims = jwt.decode(token, secret, algorithms=["HS256"])
            db.session.add(TokenRevocado(jti=claims["jti"], usuario_id=world.admin.id, expires_at=now + timedelta(hours=1)))
            db.session.commit()
    return {"Authorization": f"Bearer {token}"}


def _expected(level: str, role: str) -> str:
    """'allow', 'deny' (403), 'unauthenticated' (401), 'redirect' (302 to /login), 'back' (302 elsewhere),
    'form_again' (400, the page)."""
    if level == "public":
        return "allow"
    if level == "csrf_login":
        # The form is filled in with the administrador's e-mail: only that usuario's own session lets it through.
        return "back" if role == "administrador" else "form_again"
    if level == "csrf_logout":
        return "form_again" if role in RANK else "redirect"
    if level == "csrf_page":  # a page form: anonymous goes to /login, everyone else needs the CSRF token
        return "deny" if role in RANK else "redirect"
    if level == "ws":
        return "socket" if role in RANK else "unauthenticated"
    if level.startswith("page"):
        if role not in RANK:
            return "redirect"
        needed = {"page": 1, "page_supervisor": 2, "page_admin": 3}[level]
        return "allow" if RANK[role] >= needed else "deny"
    if role == "anonymous" or role in INVALID_CREDENTIALS:
        return "unauthenticated"
    if level == "recipient":
        return "allow" if role == "efectivo" else "deny"
    return "allow" if RANK[role] >= REQUIRED[level] else "deny"


CASES = [(endpoint, role) for endpoint in ENDPOINTS for role in ROLES]


@pytest.mark.parametrize(("endpoint", "role"), CASES, ids=[f"{e} as {r}" for e, r in CASES])
def test_authorization_matrix(app: Flask, client: FlaskClient, build: Builders, endpoint: str, role: str, request: pytest.FixtureRequest) -> None:
    level, make_request = ENDPOINTS[endpoint]
    world = _world(build)
    method, _ = endpoint.split(" ", 1)
    path, kwargs = make_request(world)
    headers = _credentials(app, build, world, role)
    if _expected(level, role) == "socket":
        # A test client cannot upgrade: open a real socket on the real server and see it accepted.
        server = request.getfixturevalue("live_server")
        socket = WsClient(server.url, headers["Authorization"].removeprefix("Bearer "))
        try:
            assert socket.recv()["event_type"] == "connection_ack", f"{endpoint} as {role}"
        finally:
            socket.close()
        return
    headers = headers | kwargs.pop("headers", {})
    with getattr(client, method.lower())(path, headers=headers, **kwargs) as response:
        status = response.status_code
        expected = _expected(level, role)
        assert status < 500
        if expected == "allow":
            assert status not in (401, 403), f"{endpoint} as {role}: {status} {response.get_data(as_text=True)[:300]}"
        elif expected == "deny":
            assert status == 403, f"{endpoint} as {role}: expected 403, got {status}"
            assert response.mimetype in ("application/problem+json", "text/html")
        elif expected == "unauthenticated":
            assert status == 401, f"{endpoint} as {role}: expected 401, got {status}"
            assert response.mimetype == "application/problem+json"
        elif expected == "back":
            assert status == 302 and "/login" not in response.headers["Location"], f"{endpoint} as {role}: {status}"
        elif expected == "form_again":
            assert status == 400 and response.mimetype == "text/html", f"{endpoint} as {role}: {status}"
        else:
            assert status == 302 and "/login" in response.headers["Location"]
