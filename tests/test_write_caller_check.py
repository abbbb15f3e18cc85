"""A write whose caller came from the token cache is checked against PostgreSQL by its own statement: a
create by its INSERT, a position by its UPDATE or the efectivo's lock, a transition, an assignment, a release,
an edit and a deletion by the tarea's lock, an efectivo's edit, deactivation and availability by the efectivo's.

Each test first lets the cache learn the token (a read), then changes the usuario or the logout list
directly in the database, as another machine whose event has not arrived yet would have: the cache still
holds the old principal, and the create must act on what PostgreSQL holds, writing nothing it may not.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from gad.extensions import db
from gad.models import Efectivo, Tarea, Usuario
from gad.principal_cache import principals
from gad.services import auth, tarea_queries
from tests.builders import Builders
from tests.helpers import PROBLEM, TAREA, all_events, count_rows, sent_to

pytestmark = pytest.mark.usefixtures("listener_connected")


# Each change, made where the token cache does not hear of it, and what a write by the changed usuario gets.
_CHANGES_BEHIND_THE_CACHE = pytest.mark.parametrize(
    ("change", "status"),
    [
        ("UPDATE usuarios SET activo = false WHERE id = %(id)s", 401),
        ("UPDATE usuarios SET token_version = token_version + 1 WHERE id = %(id)s", 401),
        ("UPDATE usuarios SET nivel = 1 WHERE id = %(id)s", 403),
    ],
    ids=["deactivated", "tokens-revoked", "demoted"],
)


def _behind_the_cache(app: Flask, sql: str, **params: Any) -> None:
    """A change the token cache does not hear of: no event, so nothing invalidates it."""
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql(sql, params)


def _logged_out_behind_the_cache(app: Flask, token: str, usuario_id: int) -> None:
    """The token put on the logout list as another machine's logout would, before its event arrives."""
    with app.app_context():
        jti = auth.decode_token(token)["jti"]
    _behind_the_cache(
        app, "INSERT INTO tokens_revocados (jti, usuario_id, expires_at) VALUES (%(jti)s, %(id)s, now() + interval '1 hour')", jti=jti, id=usuario_id
    )


def _cached(client: FlaskClient, headers: dict[str, str]) -> None:
    assert client.get("/api/v1/users/me", headers=headers).status_code == 200  # the cache now knows the token


def _refused(app: Flask, response: Any, status: int) -> None:
    assert response.status_code == status and response.headers["Content-Type"] == PROBLEM, response.get_json()
    assert count_rows(app, Tarea) == 0  # nothing written; the log holds at most the refusal's own audit
    assert [event.event_type for event in all_events(app)] == (["permission_denied"] if status == 403 else [])


def test_a_cached_supervisor_creates_with_the_check_in_the_insert(app: Flask, client: FlaskClient, build: Builders) -> None:
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    _cached(client, headers)
    created = client.post("/api/v1/tasks", json=TAREA, headers=headers)
    assert created.status_code == 201 and created.get_json()["creado_por_usuario_id"] == supervisor.id
    assert [event.actor_id for event in all_events(app)] == [supervisor.id]


def test_a_cached_writers_usuario_is_outside_the_session_and_a_change_to_it_raises_not_lost(app: Flask, client: FlaskClient, build: Builders) -> None:
    # cached_for_write leaves its usuario out of the request's session (a create's CPU): a change made to it would
    # never be written, so it must fail loudly; the same holds for any usuario whose session has ended.
    supervisor = build.usuario(2)
    token = build.token(supervisor)
    _cached(client, {"Authorization": f"Bearer {token}"})
    with app.test_request_context("/api/v1/tasks", method="POST"):
        cached = auth.cached_for_write(token)
        assert cached is not None
        usuario = cached[0]
        assert usuario.id == supervisor.id and usuario not in db.session
        with pytest.raises(RuntimeError, match="would be lost"):
            usuario.nombre = "Cambiado"
    with app.app_context():
        attached = db.session.get(Usuario, supervisor.id)
        assert attached is not None
        attached.nombre = "Cambiado"  # in a session: allowed, and written
        db.session.commit()
    with app.app_context():
        assert db.session.get(Usuario, supervisor.id).nombre == "Cambiado"  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="would be lost"):
        attached.nombre = "Otra vez"  # its session ended with the app context


def test_a_logout_the_cache_has_not_heard_of_stops_the_create(app: Flask, client: FlaskClient, build: Builders) -> None:
    supervisor = build.usuario(2)
    token = build.token(supervisor)
    headers = {"Authorization": f"Bearer {token}"}
    _cached(client, headers)
    _logged_out_behind_the_cache(app, token, supervisor.id)
    _refused(app, client.post("/api/v1/tasks", json=TAREA, headers=headers), 401)
    assert principals.get(token) is None  # the failed check made this worker forget the token for reads too


@_CHANGES_BEHIND_THE_CACHE
def test_a_change_the_cache_has_not_heard_of_stops_the_create(app: Flask, client: FlaskClient, build: Builders, change: str, status: int) -> None:
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    _cached(client, headers)
    _behind_the_cache(app, change, id=supervisor.id)
    _refused(app, client.post("/api/v1/tasks", json=TAREA, headers=headers), status)


def test_a_promotion_the_cache_has_not_heard_of_lets_the_create_through(app: Flask, client: FlaskClient, build: Builders) -> None:
    efectivo = build.usuario(1)
    headers = build.headers(efectivo)
    _cached(client, headers)
    _behind_the_cache(app, "UPDATE usuarios SET nivel = 2 WHERE id = %(id)s", id=efectivo.id)
    assert client.post("/api/v1/tasks", json=TAREA, headers=headers).status_code == 201


def test_a_logged_out_caller_gets_401_not_what_its_request_would_have_got(app: Flask, client: FlaskClient, build: Builders) -> None:
    """Before, the caller was read first, so a logged-out token never learnt more than 401: still so."""
    supervisor = build.usuario(2)
    headers = build.headers(supervisor, **{"Idempotency-Key": "k-1"})
    _cached(client, headers)
    first = client.post("/api/v1/tasks", json=TAREA, headers=headers)
    assert first.status_code == 201
    _behind_the_cache(app, "UPDATE usuarios SET activo = false WHERE id = %(id)s", id=supervisor.id)
    replay = client.post("/api/v1/tasks", json=TAREA, headers=headers)  # a stored answer, no INSERT to check it
    assert replay.status_code == 401 and "Idempotent-Replayed" not in replay.headers
    bad_body = client.post("/api/v1/tasks", json={"titulo": 7}, headers={"Authorization": headers["Authorization"]})
    assert bad_body.status_code == 401 and bad_body.headers["Content-Type"] == PROBLEM
    taken = client.post("/api/v1/tasks", json=TAREA, headers={"Authorization": headers["Authorization"]})
    assert taken.status_code == 401
    assert count_rows(app, Tarea) == 1 and len(all_events(app)) == 1


def test_a_taken_codigo_is_still_409_for_a_cached_caller(app: Flask, client: FlaskClient, build: Builders) -> None:
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    _cached(client, headers)
    assert client.post("/api/v1/tasks", json=TAREA, headers=headers).status_code == 201
    taken = client.post("/api/v1/tasks", json=TAREA | {"titulo": "Otra patrulla"}, headers=headers)
    assert taken.status_code == 409 and taken.get_json()["field"] == "codigo"
    assert count_rows(app, Tarea) == 1 and len(all_events(app)) == 1


def _cached_supervisor_without_prepared_statements(app_with: Any, build: Builders) -> tuple[Flask, FlaskClient, Any, dict[str, str]]:
    plain = app_with(DB_PREPARED_STATEMENTS=False)
    client = plain.test_client()
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    _cached(client, headers)
    return plain, client, supervisor, headers


def test_the_check_holds_without_prepared_statements(app_with: Any, build: Builders) -> None:
    """Behind a pooler in transaction mode (``DB_PREPARED_STATEMENTS=false``) the same INSERT runs as plain SQL."""
    plain, client, supervisor, headers = _cached_supervisor_without_prepared_statements(app_with, build)
    assert client.post("/api/v1/tasks", json=TAREA, headers=headers).status_code == 201
    _behind_the_cache(plain, "UPDATE usuarios SET nivel = 1 WHERE id = %(id)s", id=supervisor.id)
    refused = client.post("/api/v1/tasks", json=TAREA | {"codigo": "PAT-002"}, headers=headers)
    assert refused.status_code == 403 and count_rows(plain, Tarea) == 1


def test_a_demoted_caller_learns_nothing_about_other_usuarios(app: Flask, client: FlaskClient, build: Builders) -> None:
    """Whether a delegado exists is the create's answer to a supervisor only: a caller demoted behind the cache
    gets the 403 (audited) whatever delegado it names, as a caller read from PostgreSQL would."""
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    _cached(client, headers)
    _behind_the_cache(app, "UPDATE usuarios SET nivel = 1 WHERE id = %(id)s", id=supervisor.id)
    _refused(app, client.post("/api/v1/tasks", json=TAREA | {"delegado_usuario_id": 987654}, headers=headers), 403)


def test_a_token_version_that_is_not_an_integer_is_refused_not_a_500(app: Flask, client: FlaskClient, build: Builders) -> None:
    """``true == 1`` to Python, not to PostgreSQL: such a claim (it takes the signing key to make one) is refused
    when the token is read, before the cache or a statement sees it."""
    supervisor = build.usuario(2)
    now = int(time.time())
    claims = {"sub": str(supervisor.id), "nivel": 2, "tv": True, "jti": "bool-tv", "iat": now, "exp": now + 300}
    headers = {"Authorization": "Bearer " + jwt.encode(claims, app.config["SECRET_KEY"], algorithm="HS256")}
    assert client.get("/api/v1/users/me", headers=headers).status_code == 401
    _refused(app, client.post("/api/v1/tasks", json=TAREA, headers=headers), 401)


def _position(client: FlaskClient, efectivo_id: int, headers: dict[str, str]) -> Any:
    return client.put(f"/api/v1/efectivos/{efectivo_id}/ubicacion", json={"lat": 40.41, "lng": -3.7}, headers=headers)


def _unmoved(app: Flask, efectivo_id: int) -> None:
    with app.app_context():
        efectivo = db.session.get(Efectivo, efectivo_id)
        assert efectivo is not None and efectivo.lat is None and efectivo.posicion_en is None
    assert [event.event_type for event in all_events(app) if event.event_type == "efectivo_location_update"] == []


def test_a_cached_officer_reports_a_position_checked_by_the_lock(app: Flask, client: FlaskClient, build: Builders) -> None:
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    headers = build.headers(officer)
    _cached(client, headers)
    moved = _position(client, efectivo.id, headers)
    assert moved.status_code == 200 and moved.get_json()["lat"] == 40.41
    assert [event.actor_id for event in all_events(app)] == [officer.id]


@_CHANGES_BEHIND_THE_CACHE
def test_a_change_the_cache_has_not_heard_of_stops_a_position_report(app: Flask, client: FlaskClient, build: Builders, change: str, status: int) -> None:
    """A supervisor reports for another's efectivo: once demoted (an efectivo-level usuario may report only
    their own), logged out or deactivated behind the cache, nothing moves."""
    supervisor = build.usuario(2)
    efectivo = build.efectivo(usuario_id=build.usuario(1).id)
    headers = build.headers(supervisor)
    _cached(client, headers)
    _behind_the_cache(app, change, id=supervisor.id)
    refused = _position(client, efectivo.id, headers)
    assert refused.status_code == status and refused.headers["Content-Type"] == PROBLEM, refused.get_json()
    _unmoved(app, efectivo.id)


def test_an_unknown_efectivo_is_404_for_a_cached_caller_and_401_once_logged_out(app: Flask, client: FlaskClient, build: Builders) -> None:
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    _cached(client, headers)
    assert _position(client, 987654, headers).status_code == 404
    _behind_the_cache(app, "UPDATE usuarios SET activo = false WHERE id = %(id)s", id=supervisor.id)
    assert _position(client, 987654, headers).status_code == 401


def test_a_nivel_changed_behind_the_cache_within_what_the_create_needs_still_creates(app: Flask, client: FlaskClient, build: Builders) -> None:
    """The statement checks that the cached nivel is still the usuario's; when it is not, the caller is read and
    the rule decided again: an administrador made supervisor may still create."""
    admin = build.usuario(3)
    headers = build.headers(admin)
    _cached(client, headers)
    _behind_the_cache(app, "UPDATE usuarios SET nivel = 2 WHERE id = %(id)s", id=admin.id)
    created = client.post("/api/v1/tasks", json=TAREA, headers=headers)
    assert created.status_code == 201 and count_rows(app, Tarea) == 1 and len(all_events(app)) == 1
    assert client.get("/api/v1/users/me", headers=headers).get_json()["nivel"] == 2  # the write told this worker's reads


# The writes that lock a tarea first (a transition, an assignment, a release, an edit, a deletion): the lock's
# statement checks the caller.
_TAREA_WRITES = pytest.mark.parametrize("write", ["start", "assign", "release", "edit", "delete"])
_NIVEL_FOR = {"delete": 3}  # an administrador's; the others a supervisor's


def _tarea_write(client: FlaskClient, write: str, tarea_id: int, efectivo_id: int, headers: dict[str, str]) -> Any:
    if write == "start":
        return client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": "en_curso"}, headers=headers)
    if write == "assign":
        return client.post(f"/api/v1/tasks/{tarea_id}/efectivos", json={"efectivo_ids": [efectivo_id]}, headers=headers)
    if write == "edit":
        return client.patch(f"/api/v1/tasks/{tarea_id}", json={"titulo": "Ronda cambiada"}, headers=headers)
    if write == "delete":
        return client.delete(f"/api/v1/tasks/{tarea_id}", headers=headers)
    return client.delete(f"/api/v1/tasks/{tarea_id}/efectivos/{efectivo_id}", headers=headers)


def _writer(build: Builders, write: str) -> Any:
    return build.usuario(_NIVEL_FOR.get(write, 2))


def _tarea_to_write(client: FlaskClient, build: Builders, write: str) -> tuple[int, int]:
    """A tarea the write applies to (with the efectivo assigned, to be released), written by another supervisor."""
    owner = build.usuario(2)
    tarea = build.tarea(owner)
    efectivo = build.efectivo()
    if write == "release":
        assigned = client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=build.headers(owner))
        assert assigned.status_code == 200, assigned.get_json()
    return tarea.id, efectivo.id


def _written(app: Flask, tarea_id: int) -> tuple[Any, ...]:
    """What any of the three writes changes: the tarea's version and estado, its assignments, the event log."""
    with app.app_context():
        tarea = db.session.get(Tarea, tarea_id)
        assert tarea is not None
        rows = db.session.execute(text("SELECT efectivo_id, liberado_en FROM asignaciones WHERE tarea_id = :t ORDER BY id"), {"t": tarea_id}).all()
        return tarea.version, tarea.estado, [tuple(row) for row in rows], len(all_events(app))


@_TAREA_WRITES
def test_a_cached_supervisors_tarea_write_is_checked_by_the_tareas_lock(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    supervisor = _writer(build, write)
    tarea_id, efectivo_id = _tarea_to_write(client, build, write)
    headers = build.headers(supervisor)
    _cached(client, headers)
    with sent_to(app) as sent:
        done = _tarea_write(client, write, tarea_id, efectivo_id, headers)
    assert done.status_code == (204 if write == "delete" else 200), done.get_json()
    # No round trip of its own reads the caller: the first statement locks the tarea and checks the caller.
    name, prepare, *_ = tarea_queries._LOCKED[True]._compile()
    assert "FOR UPDATE" in prepare and "tokens_revocados" in prepare
    paid_once_per_connection = ("PREPARE ", "DEALLOCATE ")  # tests/test_round_trips.py's _per_request
    assert next(s for s in sent if not s.startswith(paid_once_per_connection)).startswith(f"EXECUTE {name}("), sent[:3]
    assert all_events(app)[-1].actor_id == supervisor.id


@_TAREA_WRITES
@_CHANGES_BEHIND_THE_CACHE
def test_a_change_the_cache_has_not_heard_of_stops_a_tarea_write(
    app: Flask, client: FlaskClient, build: Builders, write: str, change: str, status: int
) -> None:
    supervisor = _writer(build, write)
    tarea_id, efectivo_id = _tarea_to_write(client, build, write)
    headers = build.headers(supervisor)
    _cached(client, headers)
    before = _written(app, tarea_id)
    _behind_the_cache(app, change, id=supervisor.id)
    refused = _tarea_write(client, write, tarea_id, efectivo_id, headers)
    assert refused.status_code == status and refused.headers["Content-Type"] == PROBLEM, refused.get_json()
    version, estado, asignaciones, events = _written(app, tarea_id)
    assert (version, estado, asignaciones) == before[:3]
    assert events == before[3] + (1 if status == 403 else 0)  # the refusal's own audit, nothing else


@_TAREA_WRITES
def test_a_logout_the_cache_has_not_heard_of_stops_a_tarea_write(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    supervisor = _writer(build, write)
    tarea_id, efectivo_id = _tarea_to_write(client, build, write)
    token = build.token(supervisor)
    headers = {"Authorization": f"Bearer {token}"}
    _cached(client, headers)
    before = _written(app, tarea_id)
    _logged_out_behind_the_cache(app, token, supervisor.id)
    assert _tarea_write(client, write, tarea_id, efectivo_id, headers).status_code == 401
    assert _written(app, tarea_id) == before
    assert principals.get(token) is None


@pytest.mark.parametrize("write", ["assign", "release", "edit"])
def test_a_promotion_the_cache_has_not_heard_of_lets_a_supervisors_tarea_write_through(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    officer = build.usuario(1)
    tarea_id, efectivo_id = _tarea_to_write(client, build, write)
    headers = build.headers(officer)
    _cached(client, headers)
    _behind_the_cache(app, "UPDATE usuarios SET nivel = 2 WHERE id = %(id)s", id=officer.id)
    done = _tarea_write(client, write, tarea_id, efectivo_id, headers)
    assert done.status_code == 200, done.get_json()


@pytest.mark.parametrize("write", ["assign", "release", "edit", "delete"])
def test_a_caller_demoted_behind_the_cache_does_not_learn_which_tareas_exist(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    """Assigning is a supervisor's (deleting an administrador's): a caller read from PostgreSQL as an efectivo gets
    403 for any tarea id, as it did when the caller was read first, never a 404 that tells an unknown id from a
    known one."""
    supervisor = _writer(build, write)
    headers = build.headers(supervisor)
    _cached(client, headers)
    _behind_the_cache(app, "UPDATE usuarios SET nivel = 1 WHERE id = %(id)s", id=supervisor.id)
    assert _tarea_write(client, write, 987654, 1, headers).status_code == 403


@_TAREA_WRITES
def test_an_unknown_tarea_is_404_for_a_cached_caller_and_401_once_deactivated(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    supervisor = _writer(build, write)
    headers = build.headers(supervisor)
    _cached(client, headers)
    assert _tarea_write(client, write, 987654, 1, headers).status_code == 404
    _behind_the_cache(app, "UPDATE usuarios SET activo = false WHERE id = %(id)s", id=supervisor.id)
    assert _tarea_write(client, write, 987654, 1, headers).status_code == 401


def test_the_tareas_lock_checks_without_prepared_statements(app_with: Any, build: Builders) -> None:
    """Behind a pooler in transaction mode the tarea's lock runs as plain SQL, with the same check."""
    plain, client, supervisor, headers = _cached_supervisor_without_prepared_statements(app_with, build)
    tarea_id, efectivo_id = _tarea_to_write(client, build, "assign")
    assert _tarea_write(client, "assign", tarea_id, efectivo_id, headers).status_code == 200
    assert _tarea_write(client, "start", tarea_id, efectivo_id, headers).get_json()["estado"] == "en_curso"
    before = _written(plain, tarea_id)
    _behind_the_cache(plain, "UPDATE usuarios SET activo = false WHERE id = %(id)s", id=supervisor.id)
    assert _tarea_write(client, "release", tarea_id, efectivo_id, headers).status_code == 401
    assert _written(plain, tarea_id) == before


# The writes that lock an efectivo first (an edit, a deactivation, a change of availability): the efectivo's lock
# checks the caller, as it does for a position the single statement does not write.
_EFECTIVO_WRITES = pytest.mark.parametrize("write", ["edit", "deactivate", "disponibilidad"])


def _efectivo_write(client: FlaskClient, write: str, efectivo_id: int, headers: dict[str, str]) -> Any:
    if write == "edit":
        return client.patch(f"/api/v1/efectivos/{efectivo_id}", json={"unidad": "Móvil 202"}, headers=headers)
    if write == "deactivate":
        return client.delete(f"/api/v1/efectivos/{efectivo_id}", headers=headers)
    return client.post(f"/api/v1/efectivos/{efectivo_id}/disponibilidad", json={"estado": "no_disponible", "motivo": "Relevo"}, headers=headers)


def _efectivo_written(app: Flask, efectivo_id: int) -> tuple[Any, ...]:
    """What any of the three writes changes: the efectivo's version, unit, activity and availability, the log."""
    with app.app_context():
        efectivo = db.session.get(Efectivo, efectivo_id)
        assert efectivo is not None
        return efectivo.version, efectivo.unidad, efectivo.activo, efectivo.estado_disponibilidad, len(all_events(app))


@_EFECTIVO_WRITES
def test_a_cached_supervisors_efectivo_write_is_checked_by_the_efectivos_lock(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    supervisor = build.usuario(2)
    efectivo = build.efectivo(usuario_id=build.usuario(1).id)  # someone else's: the supervisor's nivel decides
    headers = build.headers(supervisor)
    _cached(client, headers)
    before = _efectivo_written(app, efectivo.id)
    with sent_to(app) as sent:
        done = _efectivo_write(client, write, efectivo.id, headers)
    assert done.status_code == (204 if write == "deactivate" else 200), done.get_json()
    # No round trip of its own reads the caller: the first statement locks the efectivo and checks the caller.
    assert "FOR UPDATE" in sent[0] and "tokens_revocados" in sent[0], sent[:2]
    assert _efectivo_written(app, efectivo.id)[0] == before[0] + 1
    assert all_events(app)[-1].actor_id == supervisor.id


@_EFECTIVO_WRITES
@_CHANGES_BEHIND_THE_CACHE
def test_a_change_the_cache_has_not_heard_of_stops_an_efectivo_write(
    app: Flask, client: FlaskClient, build: Builders, write: str, change: str, status: int
) -> None:
    """Demoted, the supervisor is an efectivo-level usuario, who may change only their own availability."""
    supervisor = build.usuario(2)
    efectivo = build.efectivo(usuario_id=build.usuario(1).id)
    headers = build.headers(supervisor)
    _cached(client, headers)
    before = _efectivo_written(app, efectivo.id)
    _behind_the_cache(app, change, id=supervisor.id)
    refused = _efectivo_write(client, write, efectivo.id, headers)
    assert refused.status_code == status and refused.headers["Content-Type"] == PROBLEM, refused.get_json()
    after = _efectivo_written(app, efectivo.id)
    assert after[:4] == before[:4]
    assert after[4] == before[4] + (1 if status == 403 else 0)  # the refusal's own audit, nothing else


@_EFECTIVO_WRITES
def test_a_logout_the_cache_has_not_heard_of_stops_an_efectivo_write(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    supervisor = build.usuario(2)
    efectivo = build.efectivo()
    token = build.token(supervisor)
    headers = {"Authorization": f"Bearer {token}"}
    _cached(client, headers)
    before = _efectivo_written(app, efectivo.id)
    _logged_out_behind_the_cache(app, token, supervisor.id)
    assert _efectivo_write(client, write, efectivo.id, headers).status_code == 401
    assert _efectivo_written(app, efectivo.id) == before
    assert principals.get(token) is None


def test_an_officer_changes_their_own_availability_checked_by_the_lock(app: Flask, client: FlaskClient, build: Builders) -> None:
    officer = build.usuario(1)
    own = build.efectivo(usuario_id=officer.id)
    other = build.efectivo(usuario_id=build.usuario(1).id)
    headers = build.headers(officer)
    _cached(client, headers)
    with sent_to(app) as sent:
        changed = _efectivo_write(client, "disponibilidad", own.id, headers)
    assert changed.status_code == 200 and changed.get_json()["estado_disponibilidad"] == "no_disponible"
    assert "FOR UPDATE" in sent[0] and "tokens_revocados" in sent[0], sent[:2]
    assert _efectivo_write(client, "disponibilidad", other.id, headers).status_code == 403  # the nivel the lock checked


@pytest.mark.parametrize("write", ["edit", "deactivate"])
def test_a_promotion_the_cache_has_not_heard_of_lets_a_supervisors_efectivo_write_through(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    officer = build.usuario(1)
    efectivo = build.efectivo()
    headers = build.headers(officer)
    _cached(client, headers)
    _behind_the_cache(app, "UPDATE usuarios SET nivel = 2 WHERE id = %(id)s", id=officer.id)
    done = _efectivo_write(client, write, efectivo.id, headers)
    assert done.status_code in (200, 204), done.get_json()


@pytest.mark.parametrize("write", ["edit", "deactivate"])
def test_a_caller_demoted_behind_the_cache_does_not_learn_which_efectivos_exist(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    _cached(client, headers)
    _behind_the_cache(app, "UPDATE usuarios SET nivel = 1 WHERE id = %(id)s", id=supervisor.id)
    assert _efectivo_write(client, write, 987654, headers).status_code == 403


@_EFECTIVO_WRITES
def test_an_unknown_efectivo_is_404_for_a_cached_writer_and_401_once_deactivated(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    _cached(client, headers)
    assert _efectivo_write(client, write, 987654, headers).status_code == 404
    assert _efectivo_write(client, write, 2**63, headers).status_code == 404
    _behind_the_cache(app, "UPDATE usuarios SET activo = false WHERE id = %(id)s", id=supervisor.id)
    assert _efectivo_write(client, write, 987654, headers).status_code == 401


@pytest.mark.parametrize("write", ["disponibilidad", "start", "assign"])
def test_a_logout_the_cache_has_not_heard_of_stops_an_idempotent_replay(app: Flask, client: FlaskClient, build: Builders, write: str) -> None:
    """These writes keep their answer under an Idempotency-Key, and a replay runs no statement to check the caller:
    the check around the view (outside the replay) answers 401, never the stored 200."""
    supervisor = build.usuario(2)
    token = build.token(supervisor)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"replay-{write}"}
    _cached(client, headers)
    if write == "disponibilidad":
        efectivo_id = build.efectivo().id
        again = lambda: _efectivo_write(client, write, efectivo_id, headers)  # noqa: E731
    else:
        tarea_id, efectivo_id = _tarea_to_write(client, build, write)
        again = lambda: _tarea_write(client, write, tarea_id, efectivo_id, headers)  # noqa: E731
    assert again().status_code == 200
    replayed = again()
    assert replayed.status_code == 200 and replayed.headers.get("Idempotent-Replayed") == "true"
    _logged_out_behind_the_cache(app, token, supervisor.id)
    refused = again()
    assert refused.status_code == 401 and "Idempotent-Replayed" not in refused.headers, refused.get_json()
