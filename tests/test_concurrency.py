"""No lost updates, proven over real HTTP against the real gunicorn + gevent server and real PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from flask import Flask

from gad.extensions import db
from gad.models import Asignacion, HistorialEstado, Tarea
from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


def _burst(count: int, send: Callable[[int], requests.Response]) -> list[requests.Response]:
    """Fire ``count`` requests as close to simultaneously as threads allow (a barrier releases them together)."""
    barrier = threading.Barrier(count)

    def fire(index: int) -> requests.Response:
        barrier.wait()
        return send(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(fire, range(count)))


def test_50_concurrent_assignments_of_one_efectivo_one_wins(app: Flask, build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    tareas = [build.tarea(sup) for _ in range(50)]
    headers = build.headers(sup)
    responses = _burst(50, lambda i: live_server.post(f"/api/v1/tasks/{tareas[i].id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 49}, statuses
    assert all(r.headers["Content-Type"] == "application/problem+json" for r in responses if r.status_code == 409)
    with app.app_context():
        assert db.session.query(Asignacion).filter(Asignacion.liberado_en.is_(None)).count() == 1


def test_20_concurrent_patches_with_same_if_match_one_wins(app: Flask, build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    tarea = build.tarea(sup)
    headers = build.headers(sup, **{"If-Match": '"1"'})
    # Every PATCH a real change (the tarea has prioridad 3): one equal to the stored value is a no-op that answers
    # 200 without a new version, so it could not lose anyone's update and would rightly not count as a loser.
    responses = _burst(
        20, lambda i: requests.patch(f"{live_server.url}/api/v1/tasks/{tarea.id}", json={"prioridad": (1, 2, 4, 5)[i % 4]}, headers=headers, timeout=30)
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 412: 19}, statuses
    assert {r.headers["ETag"] for r in responses if r.status_code == 412} == {'"2"'}
    with app.app_context():
        assert db.session.get(Tarea, tarea.id).version == 2  # type: ignore[union-attr]


def test_concurrent_transitions_never_duplicate_history(app: Flask, build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    tarea = build.tarea(sup)
    headers = build.headers(sup)
    responses = _burst(20, lambda i: live_server.post(f"/api/v1/tasks/{tarea.id}/estado", json={"estado": "en_curso"}, headers=headers))
    assert Counter(r.status_code for r in responses) == {200: 1, 409: 19}
    with app.app_context():
        rows = db.session.query(HistorialEstado).filter_by(tarea_id=tarea.id).all()
    assert [(h.estado_anterior, h.estado_nuevo) for h in rows] == [("programada", "en_curso")]


def test_concurrent_requests_with_one_idempotency_key_have_one_effect(app: Flask, build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    headers = build.headers(sup, **{"Idempotency-Key": "burst-1"})
    body = {"codigo": "IDEM-1", "titulo": "Creada una sola vez", "tipo": "patrullaje"}
    responses = _burst(10, lambda i: live_server.post("/api/v1/tasks", json=body, headers=headers))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    with app.app_context():
        assert db.session.query(Tarea).count() == 1


def test_event_ids_stay_gapless_under_concurrent_writers(app: Flask, build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    headers = build.headers(sup)
    responses = _burst(
        30,
        lambda i: live_server.post("/api/v1/tasks", json={"codigo": f"GAP-{i:03d}", "titulo": "Carrera de eventos", "tipo": "vigilancia"}, headers=headers),
    )
    assert all(r.status_code == 201 for r in responses)
    with app.app_context():
        ids = [row[0] for row in db.session.execute(db.text("SELECT id FROM eventos ORDER BY id"))]
    assert len(ids) == 30 and ids == list(range(ids[0], ids[0] + 30))


def test_concurrent_position_reports_never_move_an_efectivo_back_and_keep_event_ids_gapless(app: Flask, build: Builders, live_server: LiveServer) -> None:
    """Twenty phones' fixes of one efectivo, in any order, beside creates that take event ids too: each answered
    200; the efectivo ends at the newest fix; the positions the log records only move forward in time (a fix older
    than one committed meanwhile writes nothing); and the log stays gapless (positions take their event's id in
    the statement that writes them, as a create does)."""
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    assert live_server.get("/api/v1/users/me", headers=headers).status_code == 200  # the token cache knows the caller
    newest = datetime.now(UTC) - timedelta(seconds=5)
    fixes = [newest - timedelta(seconds=7 * ((i * 11) % 20)) for i in range(20)]  # a shuffle, the newest among them

    def send(i: int) -> requests.Response:
        if i >= 20:
            body = {"codigo": f"POS-{i:03d}", "titulo": "Carrera de posiciones", "tipo": "vigilancia"}
            return live_server.post("/api/v1/tasks", json=body, headers=headers)
        body = {"lat": 40.0 + i / 1000, "lng": -3.7, "registrado_en": fixes[i].isoformat()}
        return live_server.request("PUT", f"/api/v1/efectivos/{efectivo.id}/ubicacion", json=body, headers=headers)

    responses = _burst(30, send)
    assert [r.status_code for r in responses] == [200] * 20 + [201] * 10, [r.text[:200] for r in responses if r.status_code >= 300]
    final = live_server.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers).json()
    assert datetime.fromisoformat(final["posicion_en"]) == newest
    assert final["lat"] == 40.0 + fixes.index(newest) / 1000
    with app.app_context():
        rows = db.session.execute(db.text("SELECT id, event_type, payload FROM eventos ORDER BY id")).all()
    recorded = [datetime.fromisoformat(payload["posicion_en"]) for _, kind, payload in rows if kind == "efectivo_location_update"]
    assert 1 <= len(recorded) <= 20 and recorded == sorted(recorded) and recorded[-1] == newest
    ids = [row[0] for row in rows]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_concurrent_edits_of_ones_own_usuario_lose_nothing(app: Flask, build: Builders, live_server: LiveServer) -> None:
    """The caller's own usuario is in the request's session before its row is locked (it authenticated them), and the
    lock used to hand back that copy: eight PATCHes with one If-Match all answered 200, and without one the version
    moved by one for eight writes. Now one wins and the rest are 412; without If-Match every write counts."""
    officer = build.usuario(1)
    token = build.token(officer)
    headers = {"Authorization": f"Bearer {token}"}
    assert live_server.get("/api/v1/users/me", headers=headers).status_code == 200  # the token cache knows the caller now
    path = f"{live_server.url}/api/v1/users/{officer.id}"
    racing = _burst(8, lambda i: requests.patch(path, json={"telefono": f"+34 600 000 00{i}"}, headers=headers | {"If-Match": '"1"'}, timeout=30))
    assert Counter(r.status_code for r in racing) == {200: 1, 412: 7}, [r.text for r in racing]
    blind = _burst(8, lambda i: requests.patch(path, json={"telefono": f"+34 611 000 00{i}"}, headers=headers, timeout=30))
    assert Counter(r.status_code for r in blind) == {200: 8}
    assert sorted(int(r.headers["ETag"].strip('"')) for r in blind) == list(range(3, 11))  # each write its own version
    assert live_server.get("/api/v1/users/me", headers=headers).json()["version"] == 10


def test_concurrent_password_changes_with_one_current_password_change_it_once(app: Flask, build: Builders, live_server: LiveServer) -> None:
    """Six changes proving the same current password all answered 200 and bumped the token version once: once the
    first commits, the old password is no longer the current one."""
    officer = build.usuario(1)
    headers = {"Authorization": f"Bearer {build.token(officer)}"}
    assert live_server.get("/api/v1/users/me", headers=headers).status_code == 200
    path = f"{live_server.url}/api/v1/users/{officer.id}"
    answers = _burst(6, lambda i: requests.patch(path, json={"password": f"nueva-clave-larga-{i}", "current_password": PASSWORD}, headers=headers, timeout=30))
    statuses = Counter(r.status_code for r in answers)
    assert statuses[200] == 1 and set(statuses) <= {200, 401, 403, 422}, [r.text for r in answers]
    [winner] = [i for i, r in enumerate(answers) if r.status_code == 200]
    # The five refused proved a password no longer current: failed logins, which lock this address out of logging in
    # as the officer for a while (as a guesser's would), so the winner is checked where it is stored.
    from gad.models import Usuario
    from gad.services.auth import password_matches

    with app.app_context():
        usuario = db.session.get(Usuario, officer.id)
        assert usuario is not None and password_matches(usuario, f"nueva-clave-larga-{winner}")
        assert usuario.token_version == officer.token_version + 1


def test_concurrent_patches_of_one_turno_with_one_if_match_one_wins(app: Flask, build: Builders, live_server: LiveServer) -> None:
    """A turno was read before its efectivos were locked, and the lock on the turno handed back that copy: six PATCHes
    with one If-Match all answered 200 (and a PATCH racing a DELETE could both succeed)."""
    sup = build.usuario(2)
    turno = build.turno(build.efectivo(), inicio=datetime(2027, 3, 1, 8, tzinfo=UTC))
    headers = build.headers(sup, **{"If-Match": '"1"'})
    path = f"{live_server.url}/api/v1/turnos/{turno.id}"
    answers = _burst(6, lambda i: requests.patch(path, json={"notas": f"Relevo {i}"}, headers=headers, timeout=30))
    assert Counter(r.status_code for r in answers) == {200: 1, 412: 5}, [r.text for r in answers]
    blind = _burst(6, lambda i: requests.patch(path, json={"notas": f"Cambio {i}"}, headers=build.headers(sup), timeout=30))
    assert sorted(int(r.headers["ETag"].strip('"')) for r in blind) == list(range(3, 9))


def test_concurrent_log_outs_everywhere_each_move_the_token_version(app: Flask, build: Builders, live_server: LiveServer) -> None:
    """Six at once each answered 204 but moved the token version once: a token issued between two of them would
    have outlived the later one."""
    from gad.models import Usuario

    officer = build.usuario(1)
    tokens = [build.token(officer) for _ in range(6)]
    for token in tokens:  # every token known to the worker's cache, as a busy officer's phone and laptop are
        assert live_server.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    answers = _burst(6, lambda i: requests.post(f"{live_server.url}/api/v1/auth/logout-all", headers={"Authorization": f"Bearer {tokens[i]}"}, timeout=30))
    ended = sum(r.status_code == 204 for r in answers)
    assert ended >= 1 and all(r.status_code in (204, 401) for r in answers), [r.text for r in answers]
    with app.app_context():
        usuario = db.session.get(Usuario, officer.id)
        assert usuario is not None and usuario.token_version == officer.token_version + ended
