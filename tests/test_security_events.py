"""Security events (topic "seguridad"): every kind written once, in the shape stored rows already have."""

from __future__ import annotations

from typing import Any

from flask import Flask

from gad.extensions import db
from gad.models import Evento, Usuario
from tests.builders import PASSWORD, Builders
from tests.conftest import make_app

# The shapes rows written before these payloads were typed have (keys per event type; several where a kind
# is written from more than one place): stored rows must still parse, and new rows look like old ones.
SHAPES = {
    "login": [{"client"}],
    "login_failed": [{"client", "intentos", "email", "aggregated_until"}, {"client", "intentos", "aggregated_until"}],
    "account_locked": [{"client", "intentos", "email"}, {"client", "intentos"}],
    "logout": [{"jti"}, {"session_id", "usuario_id"}],
    "tokens_revoked": [{"usuario_id", "reason"}],
    "role_changed": [{"usuario_id", "from", "to"}],
    "user_disabled": [{"usuario_id"}],
    "permission_denied": [{"method", "path", "aggregated_until"}],
    "security_events_aggregated": [{"event_type", "source", "actor_id", "count", "samples", "window_start", "window_end", "last_at"}],
}


def _every_security_event(database_url: str, build: Builders) -> tuple[Flask, list[Evento]]:
    from gad.services import auth, sesiones, usuarios

    app = make_app(database_url, SECURITY_EVENT_WINDOW_S=600, LOGIN_MAX_FAILURES=2)
    client = app.test_client()
    admin, officer, victim = build.usuario(3), build.usuario(1), build.usuario(1)
    for _ in range(2):  # an unknown e-mail, then a known one until it locks
        assert client.post("/api/v1/auth/login", json={"email": "nobody@gad.test", "password": "wrong-secret-value"}).status_code == 401
    for _ in range(2):
        client.post("/api/v1/auth/login", json={"email": victim.email, "password": "wrong-secret-value"})
    token = client.post("/api/v1/auth/login", json={"email": officer.email, "password": PASSWORD}).get_json()["access_token"]
    for _ in range(2):
        assert client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code in (200, 204)
    with app.app_context():
        db.session.execute(db.text("UPDATE security_tallies SET window_end = now() - interval '1 second'"))  # the windows end
        db.session.commit()
        actor = db.session.get(Usuario, admin.id)
        person = db.session.get(Usuario, officer.id)
        assert actor is not None and person is not None
        sesion, _ = sesiones.start_session(person, "127.0.0.1", "test")
        db.session.flush()
        sesiones.end_session(sesion, actor)
        usuarios.update_usuario(actor, officer.id, {"nivel": 2}, None)
        usuarios.update_usuario(actor, officer.id, {"password": "another-long-password-9"}, None)
        auth.log_out_everywhere(actor, officer.id)
        usuarios.set_activo(actor, officer.id, False, None)
        db.session.commit()
        stored = db.session.query(Evento).filter_by(topic="seguridad").order_by(Evento.id).all()
        db.session.expunge_all()
    return app, stored


def test_every_security_event_keeps_the_shape_stored_rows_have(database_url: str, build: Builders) -> None:
    _, stored = _every_security_event(database_url, build)
    shapes: dict[str, list[set[str]]] = {}
    for event in stored:
        keys = set(event.payload)
        if keys not in shapes.setdefault(event.event_type, []):
            shapes[event.event_type].append(keys)
    assert {kind: sorted(map(sorted, found)) for kind, found in shapes.items()} == {kind: sorted(map(sorted, found)) for kind, found in SHAPES.items()}
    reasons = {e.payload["reason"] for e in stored if e.event_type == "tokens_revoked"}
    assert reasons == {"password", "deactivated", "logout_everywhere"}
    by_type: dict[str, Any] = {e.event_type: e.payload for e in stored}
    assert by_type["role_changed"]["from"] == 1 and by_type["role_changed"]["to"] == 2
    assert {s["event_type"] for s in (e.payload for e in stored if e.event_type == "security_events_aggregated")} == {"login_failed", "permission_denied"}


def test_every_security_event_is_its_typed_payload_and_documented(database_url: str, build: Builders) -> None:
    from gad.openapi import document
    from gad.schemas.events import SECURITY_EVENT_PAYLOADS

    app, stored = _every_security_event(database_url, build)
    assert set(SECURITY_EVENT_PAYLOADS) == set(SHAPES)
    with app.app_context():
        documented = document(app)["x-websocket-events"]
    for event in stored:
        model = SECURITY_EVENT_PAYLOADS[event.event_type]
        assert model.model_validate(event.payload).to_json() == event.payload, event.event_type
        assert event.event_type in documented
