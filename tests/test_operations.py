"""Operations core: efectivos, tareas, the state machine, assignment, ETags, idempotency, the event log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from gad.models import Evento, HistorialEstado, Tarea
from tests.builders import Builders

TAREA = {"codigo": "PAT-001", "titulo": "Patrullaje nocturno", "tipo": "patrullaje", "prioridad": 3}


def _events(app: Flask) -> list[Evento]:
    with app.app_context():
        return list(db.session.query(Evento).order_by(Evento.id))


def _count(app: Flask, model: Any) -> int:
    with app.app_context():
        return int(db.session.query(model).count())


# --- efectivos -------------------------------------------------------------------------------


def test_supervisor_creates_efectivo_and_reads_it_back(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    body = {"codigo_interno": "EF-900", "nombre": "  Laura   Gómez ", "rango": "Cabo", "unidad": "Móvil 101", "especialidad": "tráfico"}
    created = client.post("/api/v1/efectivos", json=body, headers=build.headers(sup))
    assert created.status_code == 201 and created.headers["ETag"] == '"1"'
    data = created.get_json()
    assert data["nombre"] == "Laura Gómez" and data["estado_disponibilidad"] == "disponible"
    assert client.get(created.headers["Location"], headers=build.headers(sup)).get_json()["codigo_interno"] == "EF-900"
    duplicate = client.post("/api/v1/efectivos", json=body, headers=build.headers(sup))
    assert duplicate.status_code == 409 and duplicate.get_json()["field"] == "codigo_interno"


def test_efectivo_list_filters_and_paginates(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    build.efectivo(unidad="Móvil 7", especialidad="canina")
    build.efectivo(unidad="Móvil 7", estado_disponibilidad="fuera_servicio")
    build.efectivo(unidad="Móvil 8", nombre="Buscable Único")
    headers = build.headers(sup)
    assert client.get("/api/v1/efectivos?unidad=Móvil 7", headers=headers).get_json()["total"] == 2
    assert client.get("/api/v1/efectivos?estado_disponibilidad=fuera_servicio", headers=headers).get_json()["total"] == 1
    assert client.get("/api/v1/efectivos?especialidad=canina", headers=headers).get_json()["total"] == 1
    assert client.get("/api/v1/efectivos?q=buscable", headers=headers).get_json()["total"] == 1
    page = client.get("/api/v1/efectivos?limit=2&offset=2", headers=headers).get_json()
    assert page["total"] == 3 and len(page["items"]) == 1
    bad = client.get("/api/v1/efectivos?estado_disponibilidad=volando", headers=headers)
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"].startswith("query.estado_disponibilidad")


def test_efectivo_user_sees_and_reports_only_their_own_efectivo(client: FlaskClient, build: Builders) -> None:
    user = build.usuario(1)
    mine, other = build.efectivo(usuario_id=user.id), build.efectivo()
    headers = build.headers(user)
    assert [e["id"] for e in client.get("/api/v1/efectivos", headers=headers).get_json()["items"]] == [mine.id]
    moved = client.put(f"/api/v1/efectivos/{mine.id}/ubicacion", json={"lat": 40.41, "lng": -3.70}, headers=headers)
    assert moved.status_code == 200
    data = moved.get_json()
    assert (data["lat"], data["lng"]) == (40.41, -3.70) and data["posicion_en"] is not None
    assert client.put(f"/api/v1/efectivos/{other.id}/ubicacion", json={"lat": 1, "lng": 1}, headers=headers).status_code == 403
    off = client.post(f"/api/v1/efectivos/{mine.id}/disponibilidad", json={"estado": "fuera_servicio"}, headers=headers)
    assert off.status_code == 200 and off.get_json()["estado_disponibilidad"] == "fuera_servicio"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"lat": 91, "lng": 0}, "body.lat"), ({"lat": 0, "lng": -181}, "body.lng"), ({"lat": "norte", "lng": 0}, "body.lat"), ({"lat": 1}, "body.lng")],
)
def test_bad_positions_are_422_with_field_paths(client: FlaskClient, build: Builders, body: dict, field: str) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    response = client.put(f"/api/v1/efectivos/{efectivo.id}/ubicacion", json=body, headers=build.headers(sup))
    assert response.status_code == 422
    assert field in {e["field"] for e in response.get_json()["errors"]}


def test_en_tarea_cannot_be_set_by_hand(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    response = client.post(f"/api/v1/efectivos/{efectivo.id}/disponibilidad", json={"estado": "en_tarea"}, headers=build.headers(sup))
    assert response.status_code == 409


def test_deactivating_an_assigned_efectivo_is_refused(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    tarea = build.tarea(sup)
    build.asignacion(tarea, efectivo)
    assert client.delete(f"/api/v1/efectivos/{efectivo.id}", headers=build.headers(sup)).status_code == 409
    free = build.efectivo()
    assert client.delete(f"/api/v1/efectivos/{free.id}", headers=build.headers(sup)).status_code == 204
    assert client.get(f"/api/v1/efectivos/{free.id}", headers=build.headers(sup)).get_json()["activo"] is False


# --- tareas ----------------------------------------------------------------------------------


def test_create_tarea_sets_creator_from_caller_with_location_and_etag(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    response = client.post("/api/v1/tasks", json=TAREA | {"ubicacion_lat": 40.4, "ubicacion_lng": -3.7}, headers=build.headers(sup))
    assert response.status_code == 201
    data = response.get_json()
    assert data["creado_por_usuario_id"] == sup.id and data["estado"] == "programada"
    assert response.headers["Location"].endswith(f"/api/v1/tasks/{data['id']}") and response.headers["ETag"] == '"1"'
    assert [e.event_type for e in _events(app)] == ["task_created"]
    with app.app_context():
        history = db.session.query(HistorialEstado).one()
    assert (history.estado_anterior, history.estado_nuevo, history.usuario_id) == (None, "programada", sup.id)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"codigo": "minúsculas"}, "body.codigo"),
        ({"titulo": "abc"}, "body.titulo"),
        ({"prioridad": 6}, "body.prioridad"),
        ({"prioridad": "alta"}, "body.prioridad"),
        ({"tipo": "fiesta"}, "body.tipo"),
        ({"ubicacion_lat": 40.0}, "body"),
        ({"inicio_programado": "2026-12-01T10:00:00+00:00", "fin_programado": "2026-12-01T09:00:00+00:00"}, "body"),
        ({"inicio_programado": "2026-12-01T10:00:00"}, "body.inicio_programado"),
        ({"creado_por_usuario_id": 1}, "body.creado_por_usuario_id"),
        ({"delegado_usuario_id": 999999}, "body.delegado_usuario_id"),
    ],
)
def test_invalid_tarea_is_rejected_and_nothing_is_written(app: Flask, client: FlaskClient, build: Builders, patch: dict, field: str) -> None:
    sup = build.usuario(2)
    response = client.post("/api/v1/tasks", json=TAREA | patch, headers=build.headers(sup))
    assert response.status_code == 422
    assert field in {e["field"] for e in response.get_json()["errors"]}
    assert _count(app, Tarea) == 0 and _events(app) == []


def test_duplicate_codigo_is_409(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    assert client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup)).status_code == 201
    again = client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup))
    assert again.status_code == 409 and again.get_json()["field"] == "codigo"
    assert _count(app, Tarea) == 1


def test_list_filters_sorts_and_paginates(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    # Far from the builders' default start (now + 1 h), so only ``a`` falls inside the window below.
    base = datetime(2031, 12, 1, tzinfo=UTC)
    a = build.tarea(sup, prioridad=1, tipo="vigilancia", inicio_programado=base, fin_programado=base + timedelta(hours=1))
    b = build.tarea(sup, prioridad=5, estado="en_curso", inicio_real=base, delegado_usuario_id=sup.id, titulo="Buscar la aguja")
    c = build.tarea(sup, prioridad=3, estado="pausada", inicio_real=base)
    build.asignacion(c, efectivo)
    headers = build.headers(sup)

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/tasks?{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return [t["id"] for t in response.get_json()["items"]]

    assert set(ids("estado=en_curso,pausada")) == {b.id, c.id}
    assert set(ids("estado=en_curso&estado=programada")) == {a.id, b.id}
    assert ids("tipo=vigilancia") == [a.id]
    assert set(ids("prioridad_min=3")) == {b.id, c.id}
    assert ids("prioridad_max=2") == [a.id]
    assert ids(f"delegado_usuario_id={sup.id}") == [b.id]
    assert ids(f"efectivo_id={efectivo.id}") == [c.id]
    assert ids("q=aguja") == [b.id]
    assert ids("desde=2031-11-30T00:00:00Z&hasta=2031-12-02T00:00:00Z") == [a.id]
    assert ids("sort=prioridad") == [a.id, c.id, b.id]
    assert ids("sort=-prioridad") == [b.id, c.id, a.id]
    page = client.get("/api/v1/tasks?limit=1&offset=1&sort=prioridad", headers=headers).get_json()
    assert page == page | {"total": 3, "limit": 1, "offset": 1} and page["items"][0]["id"] == c.id
    assert client.get("/api/v1/tasks?limit=201", headers=headers).status_code == 422
    assert client.get("/api/v1/tasks?sort=titulo", headers=headers).status_code == 422


def test_efectivo_user_lists_only_tareas_they_work_or_lead(client: FlaskClient, build: Builders) -> None:
    sup, user = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=user.id)
    assigned = build.tarea(sup)
    delegated = build.tarea(sup, delegado_usuario_id=user.id)
    build.tarea(sup)
    build.asignacion(assigned, efectivo)
    items = client.get("/api/v1/tasks", headers=build.headers(user)).get_json()["items"]
    assert {t["id"] for t in items} == {assigned.id, delegated.id}


def test_patch_and_put_are_partial_and_estado_is_not_patchable(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    tarea = build.tarea(sup, descripcion="original")
    headers = build.headers(sup)
    patched = client.patch(f"/api/v1/tasks/{tarea.id}", json={"prioridad": 5}, headers=headers)
    assert patched.status_code == 200 and patched.get_json()["descripcion"] == "original" and patched.headers["ETag"] == '"2"'
    put = client.put(f"/api/v1/tasks/{tarea.id}", json={"titulo": "Nuevo título"}, headers=headers)
    assert put.get_json()["prioridad"] == 5 and put.get_json()["titulo"] == "Nuevo título"
    estado = client.patch(f"/api/v1/tasks/{tarea.id}", json={"estado": "finalizada"}, headers=headers)
    assert estado.status_code == 422 and "/estado" in estado.get_json()["errors"][0]["message"]
    half_location = client.patch(f"/api/v1/tasks/{tarea.id}", json={"ubicacion_lat": 10.0}, headers=headers)
    assert half_location.status_code == 422


def test_stale_if_match_is_412_with_current_etag(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    tarea = build.tarea(sup)
    headers = build.headers(sup)
    etag = client.get(f"/api/v1/tasks/{tarea.id}", headers=headers).headers["ETag"]
    assert client.patch(f"/api/v1/tasks/{tarea.id}", json={"prioridad": 1}, headers=headers | {"If-Match": etag}).status_code == 200
    stale = client.patch(f"/api/v1/tasks/{tarea.id}", json={"prioridad": 2}, headers=headers | {"If-Match": etag})
    assert stale.status_code == 412 and stale.headers["ETag"] == '"2"'
    stale_transition = client.post(f"/api/v1/tasks/{tarea.id}/estado", json={"estado": "en_curso"}, headers=headers | {"If-Match": etag})
    assert stale_transition.status_code == 412
    garbage = client.patch(f"/api/v1/tasks/{tarea.id}", json={"prioridad": 2}, headers=headers | {"If-Match": "yesterday"})
    assert garbage.status_code == 422


def test_delete_is_soft_and_admin_only(app: Flask, client: FlaskClient, build: Builders) -> None:
    admin, sup = build.usuario(3), build.usuario(2)
    tarea = build.tarea(sup)
    assert client.delete(f"/api/v1/tasks/{tarea.id}", headers=build.headers(sup)).status_code == 403
    assert client.delete(f"/api/v1/tasks/{tarea.id}", headers=build.headers(admin)).status_code == 204
    assert client.get(f"/api/v1/tasks/{tarea.id}", headers=build.headers(admin)).status_code == 404
    with app.app_context():
        assert db.session.get(Tarea, tarea.id).deleted_at is not None  # type: ignore[union-attr]
    assert _events(app)[-1].event_type == "task_deleted"


def test_unknown_ids_are_404_problems(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(3)
    headers = build.headers(sup)
    for method, path in [("get", "/api/v1/tasks/999"), ("get", "/api/v1/efectivos/999"), ("get", "/api/v1/users/999"), ("get", "/api/v1/tasks/999/historial")]:
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 404 and response.mimetype == "application/problem+json"


# --- state machine ---------------------------------------------------------------------------


def _transition(client: FlaskClient, headers: dict, tarea_id: int, estado: str, **extra: Any):
    return client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": estado, **extra}, headers=headers)


def test_full_lifecycle_sets_times_history_and_efectivo_availability(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    e1, e2 = build.efectivo(), build.efectivo()
    tarea = build.tarea(sup)
    headers = build.headers(sup)
    assigned = client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [e1.id, e2.id]}, headers=headers)
    assert assigned.status_code == 200 and {e["efectivo_id"] for e in assigned.get_json()["efectivos"]} == {e1.id, e2.id}
    assert client.get(f"/api/v1/efectivos/{e1.id}", headers=headers).get_json()["estado_disponibilidad"] == "disponible"

    started = _transition(client, headers, tarea.id, "en_curso").get_json()
    assert started["inicio_real"] is not None
    assert client.get(f"/api/v1/efectivos/{e1.id}", headers=headers).get_json()["estado_disponibilidad"] == "en_tarea"
    assert _transition(client, headers, tarea.id, "pausada", motivo="Relevo").get_json()["estado"] == "pausada"
    assert _transition(client, headers, tarea.id, "en_curso").status_code == 200
    finished = _transition(client, headers, tarea.id, "finalizada").get_json()
    assert finished["fin_real"] is not None and finished["efectivos"] == []
    for efectivo in (e1, e2):
        assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers).get_json()["estado_disponibilidad"] == "disponible"

    history = client.get(f"/api/v1/tasks/{tarea.id}/historial", headers=headers).get_json()
    # The builder inserts the tarea directly, so the history starts at the first transition.
    assert [(h["estado_anterior"], h["estado_nuevo"]) for h in history] == [
        ("programada", "en_curso"),
        ("en_curso", "pausada"),
        ("pausada", "en_curso"),
        ("en_curso", "finalizada"),
    ]
    assert history[0]["motivo"] == "Tarea iniciada" and history[1]["motivo"] == "Relevo" and history[3]["motivo"] == "Tarea completada"
    assert all(h["usuario_id"] == sup.id for h in history)


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [
        ("programada", "finalizada", ["cancelada", "en_curso"]),
        ("programada", "pausada", ["cancelada", "en_curso"]),
        ("finalizada", "en_curso", []),
        ("cancelada", "programada", []),
        ("en_curso", "programada", ["cancelada", "finalizada", "pausada"]),
        ("pausada", "finalizada", ["cancelada", "en_curso"]),
    ],
)
def test_illegal_transitions_are_409_listing_allowed_states(
    app: Flask, client: FlaskClient, build: Builders, start: str, target: str, allowed: list[str]
) -> None:
    sup = build.usuario(2)
    now = datetime.now(UTC)
    tarea = build.tarea(sup, estado=start, inicio_real=now if start != "programada" else None, fin_real=now if start in ("finalizada",) else None)
    response = _transition(client, build.headers(sup), tarea.id, target)
    assert response.status_code == 409
    body = response.get_json()
    assert body["allowed"] == allowed and body["estado_actual"] == start
    with app.app_context():
        assert db.session.query(HistorialEstado).count() == 0


def test_pause_time_accumulates(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    paused_at = datetime.now(UTC) - timedelta(minutes=10)
    tarea = build.tarea(sup, estado="pausada", inicio_real=paused_at - timedelta(minutes=5), pausado_en=paused_at, tiempo_pausado_s=60)
    resumed = _transition(client, build.headers(sup), tarea.id, "en_curso").get_json()
    assert 659 <= resumed["tiempo_pausado_s"] <= 665


def test_cancel_releases_efectivos(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo(estado_disponibilidad="en_tarea")
    tarea = build.tarea(sup, estado="en_curso", inicio_real=datetime.now(UTC))
    build.asignacion(tarea, efectivo)
    assert _transition(client, build.headers(sup), tarea.id, "cancelada").status_code == 200
    assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=build.headers(sup)).get_json()["estado_disponibilidad"] == "disponible"


def test_efectivo_user_moves_own_tarea_but_cannot_cancel_it(client: FlaskClient, build: Builders) -> None:
    sup, user = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=user.id)
    tarea = build.tarea(sup)
    build.asignacion(tarea, efectivo)
    headers = build.headers(user)
    assert _transition(client, headers, tarea.id, "en_curso").status_code == 200
    assert _transition(client, headers, tarea.id, "cancelada").status_code == 403
    assert _transition(client, headers, tarea.id, "finalizada").status_code == 200


# --- assignment ------------------------------------------------------------------------------


def test_assigning_a_busy_efectivo_is_409_naming_the_holding_tarea(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    first, second = build.tarea(sup, codigo="HOLD-1"), build.tarea(sup)
    headers = build.headers(sup)
    assert client.post(f"/api/v1/tasks/{first.id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers).status_code == 200
    clash = client.post(f"/api/v1/tasks/{second.id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers)
    assert clash.status_code == 409
    body = clash.get_json()
    assert body["efectivo_id"] == efectivo.id and body["tarea_id"] == first.id and "HOLD-1" in body["detail"]


def test_unavailable_or_unknown_efectivos_cannot_be_assigned_and_nothing_is_half_written(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    ok, off = build.efectivo(), build.efectivo(estado_disponibilidad="fuera_servicio")
    tarea = build.tarea(sup)
    headers = build.headers(sup)
    response = client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [ok.id, off.id]}, headers=headers)
    assert response.status_code == 409 and response.get_json()["efectivo_id"] == off.id
    assert client.get(f"/api/v1/tasks/{tarea.id}", headers=headers).get_json()["efectivos"] == []
    unknown = client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [ok.id, 99999]}, headers=headers)
    assert unknown.status_code == 422
    assert client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": []}, headers=headers).status_code == 422
    assert client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": ["uno"]}, headers=headers).status_code == 422


def test_unassign_releases_a_working_efectivo(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo(estado_disponibilidad="en_tarea")
    tarea = build.tarea(sup, estado="en_curso", inicio_real=datetime.now(UTC))
    build.asignacion(tarea, efectivo)
    headers = build.headers(sup)
    response = client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", headers=headers)
    assert response.status_code == 200 and response.get_json()["efectivos"] == []
    assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers).get_json()["estado_disponibilidad"] == "disponible"
    assert client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", headers=headers).status_code == 404


# --- idempotency and the event log -----------------------------------------------------------


def test_idempotent_create_replays_the_first_response(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    headers = build.headers(sup, **{"Idempotency-Key": "create-1"})
    first = client.post("/api/v1/tasks", json=TAREA, headers=headers)
    second = client.post("/api/v1/tasks", json=TAREA, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json() and second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    assert _count(app, Tarea) == 1 and len(_events(app)) == 1
    changed = client.post("/api/v1/tasks", json=TAREA | {"titulo": "Otro título distinto"}, headers=headers)
    assert changed.status_code == 422


def test_idempotent_transition_has_one_effect(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    tarea = build.tarea(sup)
    headers = build.headers(sup, **{"Idempotency-Key": "start-1"})
    assert _transition(client, headers, tarea.id, "en_curso").status_code == 200
    assert _transition(client, headers, tarea.id, "en_curso").status_code == 200  # replay, not a 409
    with app.app_context():
        assert db.session.query(HistorialEstado).count() == 1


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_malformed_idempotency_key_is_422(app: Flask, client: FlaskClient, build: Builders, key: str) -> None:
    sup = build.usuario(2)
    response = client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup, **{"Idempotency-Key": key}))
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert _count(app, Tarea) == 0


def test_failed_request_with_key_can_be_retried(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    headers = build.headers(sup, **{"Idempotency-Key": "retry-1"})
    assert client.post("/api/v1/tasks", json=TAREA | {"delegado_usuario_id": 4242}, headers=headers).status_code == 422
    assert client.post("/api/v1/tasks", json=TAREA | {"delegado_usuario_id": 4242}, headers=headers).status_code == 422
    assert client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup, **{"Idempotency-Key": "retry-2"})).status_code == 201


def test_every_committed_change_writes_one_event_with_actor_and_request_id(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup, **{"X-Request-ID": "req-abc-123"})
    tarea_id = client.post("/api/v1/tasks", json=TAREA, headers=headers).get_json()["id"]
    client.patch(f"/api/v1/tasks/{tarea_id}", json={"prioridad": 5}, headers=headers)
    client.post(f"/api/v1/tasks/{tarea_id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers)
    client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": "en_curso"}, headers=headers)
    client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": "finalizada"}, headers=headers)  # allowed
    client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": "en_curso"}, headers=headers)  # 409: no event
    events = _events(app)
    assert [e.event_type for e in events] == [
        "task_created",
        "task_updated",
        "task_assigned",
        "efectivo_status_changed",
        "task_status_changed",
        "efectivo_status_changed",
        "task_status_changed",
    ]
    assert [e.id for e in events] == list(range(events[0].id, events[0].id + len(events)))
    assert all(e.actor_id == sup.id and e.request_id == "req-abc-123" for e in events)
    assert events[1].payload["before"] == {"prioridad": 3} and events[1].payload["after"] == {"prioridad": 5}
