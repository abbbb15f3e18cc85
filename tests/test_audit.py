"""Audit trail: security events, atomic event writes, the hash chain, verify and prune, the eventos API."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from gad.models import Evento, Tarea
from gad.realtime import chain
from tests.builders import PASSWORD, Builders
from tests.conftest import ROOT, make_app, recreate_database
from tests.helpers import all_events

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
        prev = db.session.execute(db.text("SELECT prev_hash FROM eventos ORDER BY id LIMIT 1")).scalar_one()
        db.session.execute(db.text("ALTER TABLE eventos DISABLE TRIGGER eventos_append_only"))
        for event in db.session.query(Evento).order_by(Evento.id):
            fields = {
                k: getattr(event, k) for k in ("id", "event_type", "topic", "entity_type", "entity_id", "actor_id", "request_id", "payload", "created_at")
            }
            digest = chain.link(chain.current_key(), prev, chain.canonical(**fields))
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


def _sha256_link(prev_hash: str, content: bytes) -> str:
    """The link an attacker recomputes from the code: no key, so plain SHA-256 as before the audit key."""
    return hashlib.sha256(prev_hash.encode() + content).hexdigest()


def _rewrite_from(cur: Any, victim: int) -> None:
    """The attack of issue 13 C9 with only DATABASE_URL: delete from an id, re-insert edited rows, fix the counter."""
    cur.execute(f"SELECT {_EVENT_COLUMNS} FROM eventos WHERE id >= %s ORDER BY id", (victim,))
    rows = cur.fetchall()
    cur.execute("DELETE FROM eventos WHERE id >= %s", (victim,))
    prev = rows[0][-2]
    for row in rows:
        fields = dict(zip(_EVENT_COLUMNS.split(", ")[:-2], row[:-2], strict=True))
        fields["payload"] = {**fields["payload"], "titulo": "Reescrito"}
        digest = _sha256_link(prev, chain.canonical(**fields))
        cur.execute(
            f"INSERT INTO eventos ({_EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (*row[:7], json.dumps(fields["payload"]), row[8], prev, digest),
        )
        prev = digest
    cur.execute("UPDATE eventos_contador SET last_id = %s, last_hash = %s WHERE id = 1", (rows[-1][0], prev))


_EVENT_COLUMNS = "id, event_type, topic, entity_type, entity_id, actor_id, request_id, payload, created_at, prev_hash, hash"


def test_database_credentials_cannot_open_the_prune_door(client: FlaskClient, build: Builders, database_url: str) -> None:
    ids = _make_history(client, build)
    conn = psycopg2.connect(database_url)
    try:
        for setting in ("SET LOCAL gad.allow_prune = 'on'", "SET LOCAL gad.prune_secret = 'on'"):
            with pytest.raises(psycopg2.Error, match="append-only"), conn.cursor() as cur:
                cur.execute(setting)
                cur.execute("DELETE FROM eventos WHERE id >= %s", (ids[1],))
            conn.rollback()
    finally:
        conn.close()  # rolls back what got through, so the next test's TRUNCATE is not left waiting
    assert _flask(database_url, "gad", "audit", "verify").returncode == 0


def test_history_rewritten_with_the_database_credentials_is_reported(client: FlaskClient, build: Builders, database_url: str) -> None:
    ids = _make_history(client, build)
    victim = ids[1]
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:  # the door any session could open before the audit key
            cur.execute("SET LOCAL gad.allow_prune = 'on'")
            _rewrite_from(cur, victim)
    except psycopg2.Error:
        with conn, conn.cursor() as cur:  # refused now; the owner of the table can still switch the trigger off
            cur.execute("ALTER TABLE eventos DISABLE TRIGGER eventos_append_only")
            _rewrite_from(cur, victim)
            cur.execute("ALTER TABLE eventos ENABLE TRIGGER eventos_append_only")
    conn.close()
    with client.application.app_context():
        assert db.session.query(Evento).filter_by(id=victim).one().payload["titulo"] == "Reescrito"
    result = _flask(database_url, "gad", "audit", "verify")
    assert result.returncode != 0, result.stdout
    assert f"broken at event {victim}:" in result.stderr and "does not match its hash" in result.stderr


def test_an_anchor_forged_with_the_database_credentials_is_reported(client: FlaskClient, build: Builders, database_url: str) -> None:
    ids = _make_history(client, build)
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:  # pretend everything up to the head was pruned, hiding the whole log
        cur.execute(
            "INSERT INTO auditoria_anclas (pruned_up_to_id, last_hash, pruned_count, actor, created_at, mac)"
            " SELECT last_id, last_hash, %s, 'root', now(), %s FROM eventos_contador",
            (len(ids), "0" * 64),
        )
    conn.close()
    result = _flask(database_url, "gad", "audit", "verify")
    assert result.returncode != 0 and "was not written by `flask gad audit prune`" in result.stderr


def test_a_log_cut_short_with_its_counter_is_reported_against_a_recorded_head(client: FlaskClient, build: Builders, database_url: str) -> None:
    ids = _make_history(client, build)
    first = _flask(database_url, "gad", "audit", "verify")
    head = first.stdout.strip().rsplit("head ", 1)[1]
    assert head.startswith(f"{ids[-1]}:")
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:  # drop the newest event and wind the counter back to the one before
        cur.execute("ALTER TABLE eventos DISABLE TRIGGER eventos_append_only")
        cur.execute("DELETE FROM eventos WHERE id = %s", (ids[-1],))
        cur.execute("UPDATE eventos_contador SET last_id = %s, last_hash = (SELECT hash FROM eventos WHERE id = %s)", (ids[-2], ids[-2]))
        cur.execute("ALTER TABLE eventos ENABLE TRIGGER eventos_append_only")
    conn.close()
    result = _flask(database_url, "gad", "audit", "verify", "--expect", head)
    assert result.returncode != 0 and "was cut short" in result.stderr


def test_a_link_is_the_hmac_of_the_previous_hash_and_the_content_under_its_own_key() -> None:
    # chain.link keeps each key's HMAC state to copy: links under different keys in one process must not mix.
    content = chain.canonical(
        id=1, event_type="t", topic="x", entity_type="e", entity_id=1, actor_id=None, request_id=None, payload={"ñ": 1}, created_at=datetime.now(UTC)
    )
    keys = [bytes([n]) * 40 for n in range(6)]
    for key in [*keys, *reversed(keys)]:
        assert chain.link(key, chain.GENESIS, content) == hmac.new(key, chain.GENESIS.encode() + content, hashlib.sha256).hexdigest()
    assert len({chain.link(key, chain.GENESIS, content) for key in keys}) == len(keys)


def test_a_log_sealed_under_another_key_does_not_verify(client: FlaskClient, build: Builders, database_url: str) -> None:
    _make_history(client, build)
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url, "AUDIT_KEY": "another-audit-key-" + "k" * 30}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "gad", "audit", "verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "was not written by `flask gad audit prune`" in result.stderr


def test_upgrade_reseals_an_existing_log_under_the_key_and_refuses_an_altered_one(pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = recreate_database(pg_server, "gad_reseal")
    monkeypatch.setenv("TEST_DATABASE_URL", url)  # make_app points it here; put the run's database back afterwards
    assert _flask(url, "db", "upgrade").returncode == 0
    app = make_app(url)
    build = Builders(app)
    _make_history(app.test_client(), build)
    with app.app_context():
        db.engine.dispose()
    for step in (("db", "downgrade", "0003"), ("db", "upgrade"), ("gad", "audit", "verify")):
        result = _flask(url, *step)
        assert result.returncode == 0, (step, result.stderr[-2000:])
    assert _flask(url, "db", "downgrade", "0003").returncode == 0
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:  # altered while the chain was plain SHA-256: the upgrade must not launder it
        cur.execute("ALTER TABLE eventos DISABLE TRIGGER eventos_append_only")
        cur.execute("UPDATE eventos SET payload = jsonb_set(payload, '{titulo}', '\"Editado\"') WHERE id = (SELECT min(id) FROM eventos)")
        cur.execute("ALTER TABLE eventos ENABLE TRIGGER eventos_append_only")
    conn.close()
    refused = _flask(url, "db", "upgrade")
    assert refused.returncode != 0 and "refusing to re-seal" in refused.stderr


def _count(app: Flask, event_type: str) -> int:
    with app.app_context():
        return db.session.query(Evento).filter_by(event_type=event_type).count()


def test_repeated_security_events_from_one_source_are_one_row_with_a_count(database_url: str, build: Builders) -> None:
    app = make_app(database_url, SECURITY_EVENT_WINDOW_S=600)
    client = app.test_client()
    efectivo = build.usuario(1)
    headers = build.headers(efectivo)
    for i in range(15):  # an anonymous client guessing e-mails
        assert client.post("/api/v1/auth/login", json={"email": f"nobody{i}@gad.test", "password": "wrong-secret-value"}).status_code == 401
    for _ in range(25):  # a usuario hammering an endpoint it may not use
        assert client.get("/api/v1/users", headers=headers).status_code == 403
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert other.post("/api/v1/auth/login", json={"email": "someone@gad.test", "password": "wrong-secret-value"}).status_code == 401
    assert _count(app, "login_failed") == 2  # one per source, not 16
    assert _count(app, "permission_denied") == 1
    assert _count(app, "security_events_aggregated") == 0  # the windows are still open

    with app.app_context():  # ten minutes pass
        db.session.execute(db.text("UPDATE security_tallies SET window_end = now() - interval '1 second'"))
        db.session.commit()
    token = client.post("/api/v1/auth/login", json={"email": efectivo.email, "password": PASSWORD})  # any security event closes ended windows
    assert token.status_code == 200
    with app.app_context():
        summaries = {e.payload["event_type"]: e.payload for e in db.session.query(Evento).filter_by(event_type="security_events_aggregated")}
        assert db.session.execute(db.text("SELECT count(*) FROM security_tallies")).scalar_one() == 0
    assert set(summaries) == {"login_failed", "permission_denied"}  # the lone failure from 10.0.0.9 needs no summary
    assert summaries["login_failed"]["count"] == 15 and "127.0.0.1" in summaries["login_failed"]["source"]
    assert len(summaries["login_failed"]["samples"]) == 10 and "nobody0@gad.test" in summaries["login_failed"]["samples"]
    assert summaries["permission_denied"]["count"] == 25 and summaries["permission_denied"]["actor_id"] == efectivo.id
    assert summaries["permission_denied"]["samples"] == ["GET /api/v1/users"]
    assert _count(app, "login") == 1  # successes are never folded
    assert _flask(database_url, "gad", "audit", "verify").returncode == 0


def _counter(app: Flask) -> int:
    with app.app_context():
        return int(db.session.execute(db.text("SELECT last_id FROM eventos_contador WHERE id = 1")).scalar_one())


def test_a_create_rolled_back_after_its_statement_took_the_event_id_leaves_no_gap(app: Flask, client: FlaskClient, build: Builders, database_url: str) -> None:
    """A create takes its event's id in the INSERT itself (``events.took_ids``): if its transaction then rolls back,
    the counter goes back with it, and the next committed event gets the very next id; the chain verifies."""
    from gad.models import Usuario
    from gad.services import tareas

    sup = build.usuario(2)
    client.post("/api/v1/tasks", json={**TAREA, "codigo": "AUD-A"}, headers=build.headers(sup))
    before = _counter(app)
    with app.test_request_context():
        tareas.create_tarea(db.session.get(Usuario, sup.id), {**TAREA, "codigo": "AUD-B"})
        with db.engine.connect() as other:  # the id is taken and the counter's row held by the uncommitted create
            assert other.execute(db.text("SELECT last_id FROM eventos_contador WHERE id = 1 FOR UPDATE SKIP LOCKED")).first() is None
        db.session.rollback()
    assert _counter(app) == before
    assert client.post("/api/v1/tasks", json={**TAREA, "codigo": "AUD-B"}, headers=build.headers(sup)).status_code == 201
    ids = [e.id for e in all_events(app)]
    assert ids == list(range(ids[0], ids[0] + len(ids))) and ids[-1] == before + 1
    assert _flask(database_url, "gad", "audit", "verify").returncode == 0


def test_events_queued_beyond_the_ids_a_statement_took_follow_them_and_unused_ids_go_back(
    app: Flask, client: FlaskClient, build: Builders, database_url: str
) -> None:
    """More events than the ids taken: the commit moves the counter by the rest (it holds the row, so no gap).
    Ids taken and never used: the commit gives them back."""
    from gad.models import Usuario
    from gad.realtime import events
    from gad.schemas.events import TaskUpdated
    from gad.services import tareas
    from gad.services.tarea_events import record_tarea_event

    sup = build.usuario(2)
    before = _counter(app)
    with app.test_request_context():
        actor = db.session.get(Usuario, sup.id)
        tareas.create_tarea(actor, {**TAREA, "codigo": "AUD-C"})
        tarea = db.session.query(Tarea).filter_by(codigo="AUD-C").one()
        record_tarea_event(TaskUpdated, tarea, actor, {"before": {}, "after": {}}, assigned=set())
        db.session.commit()
    assert [e.event_type for e in all_events(app)] == ["task_created", "task_updated"]
    assert [e.id for e in all_events(app)] == [before + 1, before + 2] and _counter(app) == before + 2
    with app.test_request_context():
        session = db.session()
        row = session.execute(
            db.text(f"WITH src AS (SELECT 1), ids AS ({events.TAKE_ONE_ID_CTE.format(source='src')}) SELECT last_id, last_hash FROM ids")
        ).one()
        events.took_ids(session, int(row[0]), str(row[1]), 1)
        session.commit()
    assert _counter(app) == before + 2
    assert client.post("/api/v1/tasks", json={**TAREA, "codigo": "AUD-D"}, headers=build.headers(sup)).status_code == 201
    assert [e.id for e in all_events(app)][-1] == before + 3
    assert _flask(database_url, "gad", "audit", "verify").returncode == 0


def test_events_written_at_a_savepoint_release_do_not_commit_the_transaction_around_it(app: Flask, build: Builders) -> None:
    """A request's commit sends the append and its COMMIT together; a SAVEPOINT's release also runs the event
    hook, and there it must not commit: rolling the outer transaction back leaves no event and no id taken."""
    from gad.models import Usuario
    from gad.schemas.events import TaskUpdated
    from gad.services import tareas
    from gad.services.tarea_events import record_tarea_event

    sup = build.usuario(2)
    tarea_id = build.tarea(sup, codigo="AUD-S").id
    before, events_before = _counter(app), len(all_events(app))
    with app.test_request_context():
        actor = db.session.get(Usuario, sup.id)
        tarea = tareas.get_tarea(actor, tarea_id)
        record_tarea_event(TaskUpdated, tarea, actor, {"before": {}, "after": {}}, assigned=set())
        with db.session.begin_nested():
            db.session.execute(db.text("SELECT 1"))
        db.session.rollback()
    assert _counter(app) == before and len(all_events(app)) == events_before


def test_payloads_of_every_shape_are_stored_as_json_gives_them_back_and_verify(app: Flask, build: Builders, database_url: str) -> None:
    """A payload already as JSON gives it back is hashed and sent without a JSON round trip; anything else (an
    instant, a tuple, an enum, a key that is not text) is made so first. Either way the stored row verifies."""
    from datetime import UTC, datetime

    from gad.realtime.events import PendingEvent, _queue
    from gad.vocab import EstadoTarea

    plain = {
        "texto": 'Móvil 101 — ñ \u00e9 😀 "comillas" \\ barra',
        "n": 2**62,
        "x": -3.703790,
        "pequeño": 1e-07,
        "ok": True,
        "nada": None,
        "lista": [1, "a", {"b": []}],
        "clave ü": "v",
    }
    shaped = {
        "cuando": datetime(2026, 12, 3, 9, 0, tzinfo=UTC),
        "tupla": (1, 2),
        "estado": EstadoTarea.EN_CURSO,
        "por_id": {7: "siete"},
        "dentro": [{"t": (3,)}],
        "cero": -0.0,  # numeric has no negative zero
        "enorme": 1e300,  # written out by JSONB: an integer when read back
        "grande": -1.5e16,
    }
    sup = build.usuario(2)
    with app.test_request_context():
        for payload in (plain, shaped):
            _queue(db.session, PendingEvent("task_updated", "tareas", "tarea", 1, sup.id, payload, None))
        db.session.commit()
    with app.app_context():
        stored = [e.payload for e in db.session.query(Evento).order_by(Evento.id.desc()).limit(2)][::-1]
    assert stored[0] == plain
    assert stored[1] == {
        "cuando": "2026-12-03 09:00:00+00:00",
        "tupla": [1, 2],
        "estado": "en_curso",
        "por_id": {"7": "siete"},
        "dentro": [{"t": [3]}],
        "cero": 0.0,
        "enorme": 10**300,
        "grande": -15 * 10**15,
    }
    result = _flask(database_url, "gad", "audit", "verify")
    assert result.returncode == 0 and "intact" in result.stdout, result.stdout + result.stderr


def test_a_position_at_negative_zero_leaves_a_log_that_verifies(client: FlaskClient, build: Builders, database_url: str) -> None:
    """Any officer may send their position as -0.0: its event was hashed with the negative zero PostgreSQL's numeric
    does not keep, and `audit verify` then reported the log altered."""
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    moved = client.put(f"/api/v1/efectivos/{efectivo.id}/ubicacion", json={"lat": -0.0, "lng": -0.0}, headers=build.headers(officer))
    assert moved.status_code == 200, moved.get_json()
    result = _flask(database_url, "gad", "audit", "verify")
    assert result.returncode == 0 and "intact" in result.stdout, result.stdout + result.stderr
