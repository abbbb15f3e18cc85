"""Audit trail: security events, atomic event writes, the hash chain, verify and prune, the eventos API."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from gad.models import Evento, Tarea
from tests.builders import PASSWORD, Builders
from tests.conftest import ROOT, make_app

TAREA = {"codigo": "AUD-1", "titulo": "Tarea auditada", "tipo": "patrullaje"}


def _flask(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _types(app: Flask) -> list[str]:
    with app.app_context():
        return [e.event_type for e in db.session.query(Evento).order_by(Evento.id)]


def test_security_events_are_recorded_without_passwords(app: Flask, client: FlaskClient, build: Builders) -> None:
    admin, user = build.usuario(3), build.usuario(1)
    client.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong-secret-value"})
    token = client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).get_json()["access_token"]
    assert client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    client.patch(f"/api/v1/users/{user.id}", json={"nivel": 2}, headers=build.headers(admin))
    client.delete(f"/api/v1/users/{user.id}", headers=build.headers(admin))
    types = _types(app)
    for expected in ("login_failed", "login", "permission_denied", "logout", "role_changed", "user_disabled", "tokens_revoked"):
        assert expected in types, f"{expected} missing from {types}"
    with app.app_context():
        dump = " ".join(str(e.payload) for e in db.session.query(Evento))
        failed = db.session.query(Evento).filter_by(event_type="login_failed").one()
    assert "wrong-secret-value" not in dump and PASSWORD not in dump
    assert failed.payload["client"] and failed.topic == "seguridad"


def test_failing_event_write_rolls_the_change_back(database_url: str, build: Builders) -> None:
    app = make_app(database_url, PROPAGATE_EXCEPTIONS=False, TESTING=False)
    sup = build.usuario(2)
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION test_fail_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.event_type = 'task_created' THEN RAISE EXCEPTION 'event store down'; END IF; RETURN NEW; END $$"
        )
        cur.execute("CREATE TRIGGER test_fail_event BEFORE INSERT ON eventos FOR EACH ROW EXECUTE FUNCTION test_fail_event()")
    try:
        response = app.test_client().post("/api/v1/tasks", json=TAREA, headers=build.headers(sup))
        assert response.status_code >= 500 and response.mimetype == "application/problem+json"
        with app.app_context():
            assert db.session.query(Tarea).count() == 0
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP TRIGGER test_fail_event ON eventos")
            cur.execute("DROP FUNCTION test_fail_event()")
        conn.close()


def test_database_refuses_update_and_delete_on_the_log(client: FlaskClient, build: Builders, database_url: str) -> None:
    sup = build.usuario(2)
    client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup))
    conn = psycopg2.connect(database_url)
    for statement in ("UPDATE eventos SET payload = '{}'", "DELETE FROM eventos"):
        with pytest.raises(psycopg2.Error, match="append-only"), conn.cursor() as cur:
            cur.execute(statement)
        conn.rollback()
    conn.close()


def _make_history(client: FlaskClient, build: Builders) -> list[int]:
    sup = build.usuario(2)
    headers = build.headers(sup)
    for i in range(4):
        client.post("/api/v1/tasks", json={**TAREA, "codigo": f"AUD-{i}"}, headers=headers)
    with client.application.app_context():
        return [e.id for e in db.session.query(Evento).order_by(Evento.id)]


def test_verify_passes_on_an_untouched_log(client: FlaskClient, build: Builders, database_url: str) -> None:
    _make_history(client, build)
    result = _flask(database_url, "gad", "audit", "verify")
    assert result.returncode == 0 and "intact" in result.stdout


def test_verify_names_the_event_whose_payload_was_altered(client: FlaskClient, build: Builders, database_url: str) -> None:
    ids = _make_history(client, build)
    victim = ids[2]
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:  # a privileged connection with the trigger disabled
        cur.execute("ALTER TABLE eventos DISABLE TRIGGER eventos_append_only")
        cur.execute("UPDATE eventos SET payload = jsonb_set(payload, '{titulo}', '\"Editado\"') WHERE id = %s", (victim,))
        cur.execute("ALTER TABLE eventos ENABLE TRIGGER eventos_append_only")
    conn.close()
    result = _flask(database_url, "gad", "audit", "verify")
    assert result.returncode != 0
    assert f"broken at event {victim}:" in result.stderr and "content" in result.stderr


def test_verify_names_the_gap_left_by_a_deleted_event(client: FlaskClient, build: Builders, database_url: str) -> None:
    ids = _make_history(client, build)
    victim = ids[1]
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE eventos DISABLE TRIGGER eventos_append_only")
        cur.execute("DELETE FROM eventos WHERE id = %s", (victim,))
        cur.execute("ALTER TABLE eventos ENABLE TRIGGER eventos_append_only")
    conn.close()
    result = _flask(database_url, "gad", "audit", "verify")
    assert result.returncode != 0 and f"broken at event {victim}:" in result.stderr and "missing" in result.stderr


def test_prune_records_what_it_pruned_and_reanchors_the_chain(client: FlaskClient, build: Builders, database_url: str, app: Flask) -> None:
    ids = _make_history(client, build)
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:  # age the first half of the log past retention
        cur.execute("ALTER TABLE eventos DISABLE TRIGGER eventos_append_only")
        cur.execute("UPDATE eventos SET created_at = created_at - interval '400 days' WHERE id <= %s", (ids[3],))
        cur.execute("ALTER TABLE eventos ENABLE TRIGGER eventos_append_only")
    conn.close()
    # Ageing rewrote created_at, so re-seal those rows the way they would have been written back then.
    with app.app_context():
        from gad.realtime import chain

        prev = db.session.execute(db.text("SELECT prev_hash FROM eventos ORDER BY id LIMIT 1")).scalar_one()
        db.session.execute(db.text("ALTER TABLE eventos DISABLE TRIGGER eventos_append_only"))
        for event in db.session.query(Evento).order_by(Evento.id):
            fields = {
                k: getattr(event, k) for k in ("id", "event_type", "topic", "entity_type", "entity_id", "actor_id", "request_id", "payload", "created_at")
            }
            digest = chain.link(prev, chain.canonical(**fields))
            db.session.execute(db.text("UPDATE eventos SET prev_hash = :p, hash = :h WHERE id = :id"), {"p": prev, "h": digest, "id": event.id})
            prev = digest
        db.session.execute(db.text("UPDATE eventos_contador SET last_hash = :h"), {"h": prev})
        db.session.execute(db.text("ALTER TABLE eventos ENABLE TRIGGER eventos_append_only"))
        db.session.commit()
    pruned = _flask(database_url, "gad", "audit", "prune", "--older-than-days", "365")
    assert pruned.returncode == 0 and f"up to id {ids[3]}" in pruned.stdout
    with app.app_context():
        remaining = [e.id for e in db.session.query(Evento).order_by(Evento.id)]
    assert remaining == [i for i in ids if i > ids[3]]
    assert _flask(database_url, "gad", "audit", "verify").returncode == 0
    client.post("/api/v1/tasks", json={**TAREA, "codigo": "AUD-NEW"}, headers=build.headers(build.usuario(2)))
    assert _flask(database_url, "gad", "audit", "verify").returncode == 0


def test_eventos_api_filters_and_pages_by_id_cursor(client: FlaskClient, build: Builders) -> None:
    admin, sup = build.usuario(3), build.usuario(2)
    headers = build.headers(sup)
    for i in range(5):
        client.post("/api/v1/tasks", json={**TAREA, "codigo": f"PAGE-{i}"}, headers=headers)
    admin_headers = build.headers(admin)
    first = client.get("/api/v1/eventos?event_type=task_created&limit=2", headers=admin_headers).get_json()
    assert len(first["items"]) == 2 and first["next_cursor"] == first["items"][-1]["id"]
    second = client.get(f"/api/v1/eventos?event_type=task_created&limit=2&after_id={first['next_cursor']}", headers=admin_headers).get_json()
    third = client.get(f"/api/v1/eventos?event_type=task_created&limit=2&after_id={second['next_cursor']}", headers=admin_headers).get_json()
    ids = [e["id"] for page in (first, second, third) for e in page["items"]]
    assert len(ids) == 5 and ids == sorted(ids) and third["next_cursor"] is None
    by_actor = client.get(f"/api/v1/eventos?actor_id={sup.id}&entity_type=tarea", headers=admin_headers).get_json()
    assert {e["actor_id"] for e in by_actor["items"]} == {sup.id}
    assert all(len(e["hash"]) == 64 for e in by_actor["items"])
    assert client.get("/api/v1/eventos", headers=headers).status_code == 403
    assert client.get("/api/v1/eventos?limit=0", headers=admin_headers).status_code == 422
