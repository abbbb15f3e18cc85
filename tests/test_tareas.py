"""Tareas API: create, list, edit with ETags, soft delete, unknown ids."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import text

from gad.extensions import db
from gad.models import HistorialEstado, Tarea
from tests.builders import Builders
from tests.helpers import TAREA, all_events, count_rows


def test_create_tarea_sets_creator_from_caller_with_location_and_etag(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    response = client.post("/api/v1/tasks", json=TAREA | {"ubicacion_lat": 40.4, "ubicacion_lng": -3.7}, headers=build.headers(sup))
    assert response.status_code == 201
    data = response.get_json()
    assert data["creado_por_usuario_id"] == sup.id and data["estado"] == "programada"
    assert response.headers["Location"].endswith(f"/api/v1/tasks/{data['id']}") and response.headers["ETag"] == '"1"'
    assert [e.event_type for e in all_events(app)] == ["task_created"]
    with app.app_context():
        history = db.session.query(HistorialEstado).one()
    assert (history.estado_anterior, history.estado_nuevo, history.usuario_id) == (None, "programada", sup.id)


@pytest.mark.parametrize("prefix", ["", "/gad"])
def test_a_created_tareas_location_is_the_url_its_rule_builds_and_reads_it(app: Flask, client: FlaskClient, build: Builders, prefix: str) -> None:
    # The Location is built without url_for (blueprints/tareas.py's _tarea_url): it must stay what url_for builds,
    # behind a proxy's path prefix (SCRIPT_NAME) too, for a create and for an emergency.
    sup, base = build.usuario(2), f"http://localhost{prefix}"
    created = client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup), base_url=base)
    raised = client.post("/api/v1/tasks/emergency", json={"lat": 0, "lng": 0}, headers=build.headers(sup), base_url=base)
    assert created.status_code == 201 and raised.status_code == 201
    for response, tarea_id in ((created, created.get_json()["id"]), (raised, raised.get_json()["tarea"]["id"])):
        with app.test_request_context(base_url=base):
            assert response.headers["Location"] == url_for("tareas.get_tarea", tarea_id=tarea_id) == f"{prefix}/api/v1/tasks/{tarea_id}"
        read = client.get(response.headers["Location"].removeprefix(prefix), headers=build.headers(sup), base_url=base)
        assert read.status_code == 200 and read.get_json()["id"] == tarea_id


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"codigo": "minúsculas"}, "body.codigo"),
        ({"titulo": "abc"}, "body.titulo"),
        ({"prioridad": 6}, "body.prioridad"),
        ({"prioridad": "alta"}, "body.prioridad"),
        ({"tipo": "fiesta"}, "body.tipo"),
        ({"ubicacion_lat": 40.0}, "body.ubicacion_lng"),
        ({"inicio_programado": "2026-12-01T10:00:00+00:00", "fin_programado": "2026-12-01T09:00:00+00:00"}, "body.fin_programado"),
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
    assert count_rows(app, Tarea) == 0 and all_events(app) == []


def test_duplicate_codigo_is_409(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    assert client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup)).status_code == 201
    again = client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup))
    assert again.status_code == 409 and again.get_json()["field"] == "codigo"
    # The refused create left nothing behind: no second history row, no event.
    assert count_rows(app, Tarea) == 1 and count_rows(app, HistorialEstado) == 1 and len(all_events(app)) == 1


def test_create_racing_an_uncommitted_tarea_with_the_same_codigo_is_409(app: Flask, client: FlaskClient, build: Builders) -> None:
    """The unique index decides in the INSERT itself: a create that waits on another transaction's row with its
    codigo gets the same 409 once that commits (not an IntegrityError), and leaves no history or event."""
    sup = build.usuario(2)
    with app.app_context():
        other = db.engine.connect()
    try:
        other.execute(
            text(
                "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, creado_por_usuario_id, created_at, updated_at, version) "
                "VALUES (gen_random_uuid(), :codigo, 'Otra transacción', 'patrullaje', 2, 'programada', :sup, now(), now(), 1)"
            ),
            {"codigo": TAREA["codigo"], "sup": sup.id},
        )
        with ThreadPoolExecutor(1) as pool:
            racing = pool.submit(lambda: client.post("/api/v1/tasks", json=TAREA, headers=build.headers(sup)))
            time.sleep(0.5)
            assert not racing.done()  # waiting on the uncommitted row's index entry
            other.commit()
            response = racing.result(timeout=30)
    finally:
        other.close()
    assert response.status_code == 409 and response.get_json()["field"] == "codigo"
    assert count_rows(app, Tarea) == 1 and count_rows(app, HistorialEstado) == 0 and all_events(app) == []


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
    assert ids("prioridad_min=3&prioridad_max=3") == [c.id]
    # A reversed range is said to be one, as a reversed desde/hasta is, not answered with an empty page.
    reversed_range = client.get("/api/v1/tasks?prioridad_min=5&prioridad_max=1", headers=headers)
    assert reversed_range.status_code == 422 and reversed_range.mimetype == "application/problem+json"
    assert [e["field"] for e in reversed_range.get_json()["errors"]] == ["query.prioridad_max"]


@pytest.mark.parametrize(
    ("q", "found"),
    [("_", "underscore"), ("%", "percent"), ("\\", "backslash"), ("0%", "percent"), ("a_n", "underscore")]
    + [(q, "symbols") for q in ("(", "[B]", "*", "a|b", "^$", "{2}", "+", "***=")],
)
def test_a_search_finds_pattern_characters_as_typed_in_every_list(client: FlaskClient, build: Builders, q: str, found: str) -> None:
    """``q`` is text to find, not a pattern: ``_``, ``%`` and a regular expression's operators are characters to
    find in the tarea, efectivo and usuario lists."""
    admin = build.usuario(3, nombre="Admin", apellido="Central")
    stored = {
        "underscore": "Ruta_norte",
        "percent": "Al 100% de cobertura",
        "backslash": "Sector A\\B",
        "symbols": "***=Km (norte) [B]* a|b ^$ {2}+",
        "plain": "Ruta sur",
    }
    ids = {name: (build.tarea(admin, titulo=t).id, build.efectivo(nombre=t).id, build.usuario(1, apellido=t).id) for name, t in stored.items()}
    headers = build.headers(admin)
    for column, path in enumerate(("/api/v1/tasks", "/api/v1/efectivos", "/api/v1/users")):
        response = client.get(path, query_string={"q": q}, headers=headers)
        assert response.status_code == 200, response.get_json()
        assert [item["id"] for item in response.get_json()["items"]] == [ids[found][column]], path


@pytest.mark.parametrize(
    ("q", "found"),
    [
        ("paginacion", {"accented", "unaccented"}),
        ("PAGINACIÓN", {"accented", "unaccented"}),
        ("NUNEZ", {"enye"}),
        ("nuñez", {"enye"}),
        ("revisión", {"decomposed"}),
        ("REVISIO\u0301N", {"decomposed"}),
        ("ruta", {"other"}),
    ],
)
def test_a_search_finds_words_with_or_without_their_accents_in_every_list(client: FlaskClient, build: Builders, q: str, found: set[str]) -> None:
    """An operator types «paginacion» or «NUNEZ» on a phone, and the row says «Paginación», «Núñez» (or the other way
    round, or an accent stored as a mark of its own): the tarea, efectivo and usuario lists find it all the same."""
    admin = build.usuario(3, nombre="Admin", apellido="Central")
    stored = {
        "accented": "Paginación del parte",
        "unaccented": "Paginacion sin tildes",
        "enye": "Puesto Núñez",
        "decomposed": "Revisio\u0301n nocturna",
        "other": "Ruta sur",
    }
    ids = {name: (build.tarea(admin, titulo=t).id, build.efectivo(nombre=t).id, build.usuario(1, apellido=t).id) for name, t in stored.items()}
    headers = build.headers(admin)
    for column, path in enumerate(("/api/v1/tasks", "/api/v1/efectivos", "/api/v1/users")):
        response = client.get(path, query_string={"q": q}, headers=headers)
        assert response.status_code == 200, response.get_json()
        assert {item["id"] for item in response.get_json()["items"]} == {ids[name][column] for name in found}, path


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
    # Only a tag as this API sends it: what int() alone read as one (unquoted, "0_2", "+2", "-1": the weak marker) is 422.
    for garbage in ("yesterday", "2", '"0_2"', '"+2"', '""+2"', '"-1"', '"2', '" 2"'):
        refused = client.patch(f"/api/v1/tasks/{tarea.id}", json={"prioridad": 2}, headers=headers | {"If-Match": garbage})
        assert refused.status_code == 422 and [e["field"] for e in refused.get_json()["errors"]] == ["header.If-Match"], garbage
    # If-Match compares strongly (RFC 9110 13.1.1): a weak tag never matches, even one naming the current version.
    weak = client.patch(f"/api/v1/tasks/{tarea.id}", json={"prioridad": 2}, headers=headers | {"If-Match": 'W/"2"'})
    assert weak.status_code == 412 and weak.mimetype == "application/problem+json" and "weak" in weak.get_json()["detail"]
    assert weak.headers["ETag"] == '"2"'  # the strong one to send instead
    # Judged where a stale one is: after the tarea is found and the caller allowed.
    assert client.patch("/api/v1/tasks/999999", json={"prioridad": 3}, headers=headers | {"If-Match": 'W/"1"'}).status_code == 404
    officer = build.headers(build.usuario(1))
    assert client.patch(f"/api/v1/tasks/{tarea.id}", json={"prioridad": 3}, headers=officer | {"If-Match": 'W/"2"'}).status_code == 403
    assert client.get(f"/api/v1/tasks/{tarea.id}", headers=headers).get_json()["prioridad"] == 1


def test_delete_is_soft_and_admin_only(app: Flask, client: FlaskClient, build: Builders) -> None:
    admin, sup = build.usuario(3), build.usuario(2)
    tarea = build.tarea(sup)
    assert client.delete(f"/api/v1/tasks/{tarea.id}", headers=build.headers(sup)).status_code == 403
    assert client.delete(f"/api/v1/tasks/{tarea.id}", headers=build.headers(admin)).status_code == 204
    assert client.get(f"/api/v1/tasks/{tarea.id}", headers=build.headers(admin)).status_code == 404
    with app.app_context():
        assert db.session.get(Tarea, tarea.id).deleted_at is not None  # type: ignore[union-attr]
    assert all_events(app)[-1].event_type == "task_deleted"


def test_unknown_ids_are_404_problems(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(3)
    headers = build.headers(sup)
    for method, path in [("get", "/api/v1/tasks/999"), ("get", "/api/v1/efectivos/999"), ("get", "/api/v1/users/999"), ("get", "/api/v1/tasks/999/historial")]:
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_a_create_answers_the_same_with_prepared_statements_on_and_off(app_with: Any, build: Builders) -> None:
    """The create's INSERT runs prepared (values reach psycopg2 as they are, the jsonb cast in SQL, the uuid made by
    PostgreSQL) or as plain SQL behind a pooler: every field comes back the same either way, and reads back the same;
    each tarea has a random uuid of its own."""
    sup = build.usuario(2)
    delegado = build.usuario(1)
    full = {
        "titulo": "Revisión ñandú — «comillas» y emoji 🚓",
        "descripcion": "Línea 1\nLínea 2\ttab",
        "tipo": "vigilancia",
        "prioridad": 5,
        "inicio_programado": "2031-01-01T08:00:00.123456+00:00",
        "fin_programado": "2031-01-01T09:30:00+00:00",
        "ubicacion_lat": -89.999999,
        "ubicacion_lng": 179.999999,
        "ubicacion_descripcion": "Plaza Mayor",
        "delegado_usuario_id": delegado.id,
        "notas": "x" * 5000,
    }
    answers = []
    uuids = []
    for setting, codigo in ((True, "PREP-ON"), (False, "PREP-OFF")):
        client = app_with(DB_PREPARED_STATEMENTS=setting).test_client()
        created = client.post("/api/v1/tasks", json=full | {"codigo": codigo}, headers=build.headers(sup))
        assert created.status_code == 201, created.get_json()
        read = client.get(f"/api/v1/tasks/{created.get_json()['id']}", headers=build.headers(sup)).get_json()
        assert created.get_json() == read
        uuids.append(uuid.UUID(read["uuid"]))
        answers.append({k: v for k, v in read.items() if k not in {"id", "uuid", "codigo", "created_at", "updated_at"}})
    assert answers[0] == answers[1]
    assert uuids[0] != uuids[1] and {u.version for u in uuids} == {4}
    assert answers[0]["ubicacion_lng"] == 179.999999 and answers[0]["titulo"] == full["titulo"] and answers[0]["estado"] == "programada"
