"""Instants outside 1900–2199 UTC: refused with a 422 naming the field everywhere (body, form, query), refused by
the database, and a stored one never breaks a read. Over real HTTP to gunicorn + gevent, on real PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest
import requests

from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer
from tests.helpers import assert_422_naming, tarea_body

# Out of [1900-01-01, 2200-01-01) once converted to UTC; the first two are years 10000 and 0 in UTC.
OUT_OF_RANGE = [
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "1899-12-31T23:59:59Z",
    "1900-01-01T00:00:00+00:01",
    "2200-01-01T00:00:00Z",
    "2199-12-31T23:59:59-00:01",
]
# Seconds since 1970, which pydantic would read as an instant: a client's Unix time is not one written out.
NUMBERS: list[Any] = [1800000000, 1800000000.5, "1800000000", " 1800000000 ", "-1e3"]
# Inside the window (the last two only after conversion to UTC).
IN_RANGE = ["1900-01-01T00:00:00Z", "2199-12-31T23:59:59Z", "1899-12-31T23:00:00-01:00", "2200-01-01T13:59:59+14:00"]


def test_out_of_range_instants_on_tasks_are_422_naming_the_field(live_server: LiveServer, build: Builders) -> None:
    admin = build.usuario(3)
    headers = build.headers(admin)
    url = live_server.url + "/api/v1/tasks"
    existing = requests.post(url, json=tarea_body("A1-BASE"), headers=headers, timeout=30)
    assert existing.status_code == 201
    tarea_url = f"{url}/{existing.json()['id']}"
    for n, value in enumerate(OUT_OF_RANGE):
        for field in ("inicio_programado", "fin_programado"):
            assert_422_naming(requests.post(url, json=tarea_body(f"A1-{n}", **{field: value}), headers=headers, timeout=30), f"body.{field}")
            patched = requests.patch(tarea_url, json={field: value}, headers=headers | {"If-Match": existing.headers["ETag"]}, timeout=30)
            assert_422_naming(patched, f"body.{field}")
        for param in ("desde", "hasta"):
            assert_422_naming(requests.get(url, params={param: value}, headers=headers, timeout=30), f"query.{param}")
            assert_422_naming(requests.get(live_server.url + "/api/v1/eventos", params={param: value}, headers=headers, timeout=30), f"query.{param}")
    # Nothing was stored, and every read still answers.
    listing = requests.get(url, headers=headers, timeout=30)
    assert listing.status_code == 200 and [t["codigo"] for t in listing.json()["items"]] == ["A1-BASE"]


def test_boundary_instants_are_accepted_and_every_read_of_them_answers(live_server: LiveServer, build: Builders) -> None:
    admin = build.usuario(3)
    headers = build.headers(admin)
    url = live_server.url + "/api/v1/tasks"
    created = []
    for n, (inicio, fin) in enumerate([(IN_RANGE[0], IN_RANGE[1]), (IN_RANGE[2], IN_RANGE[3])]):
        response = requests.post(url, json=tarea_body(f"A1-IN-{n}", inicio_programado=inicio, fin_programado=fin), headers=headers, timeout=30)
        assert response.status_code == 201, response.text
        created.append(response.json())
    stored = requests.get(f"{url}/{created[1]['id']}", headers=headers, timeout=30).json()
    assert datetime.fromisoformat(stored["inicio_programado"]) == datetime(1900, 1, 1, tzinfo=UTC)
    assert datetime.fromisoformat(stored["fin_programado"]) == datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)
    for query in ({}, {"desde": IN_RANGE[0]}, {"hasta": IN_RANGE[1]}, {"sort": "inicio_programado"}, {"sort": "-inicio_programado"}):
        assert requests.get(url, params=query, headers=headers, timeout=30).status_code == 200
    for path in ("/api/v1/dashboard/resumen", f"/api/v1/stats/user/{admin.id}", "/api/v1/eventos"):
        assert requests.get(live_server.url + path, headers=headers, timeout=30).status_code == 200, path
    tarea = created[0]
    detail = requests.get(f"{url}/{tarea['id']}", headers=headers, timeout=30)
    assert detail.status_code == 200
    started = requests.post(f"{url}/{tarea['id']}/estado", json={"estado": "en_curso"}, headers=headers | {"If-Match": detail.headers["ETag"]}, timeout=30)
    assert started.status_code == 200, started.text
    deleted = requests.delete(f"{url}/{tarea['id']}", headers=headers | {"If-Match": started.headers["ETag"]}, timeout=30)
    assert deleted.status_code in {204, 409}, deleted.text


def test_planning_week_outside_the_window_is_422_naming_semana(live_server: LiveServer, build: Builders) -> None:
    """The week of 9999-12-31 ended past Python's last date (500); that of 0001-01-01 answered year-1 instants."""
    headers = build.headers(build.usuario(2))
    url = live_server.url + "/api/v1/planificacion/semana"
    for dia in ("9999-12-31", "0001-01-01", "1899-12-31", "2200-01-01"):
        response = requests.get(url, params={"semana": dia}, headers=headers, timeout=30)
        assert_422_naming(response, "query.semana")
        assert "between 1900-01-01 and 2199-12-31" in response.json()["errors"][0]["message"]
    assert_422_naming(requests.get(url, params={"semana": "2026-02-30"}, headers=headers, timeout=30), "query.semana")
    first = requests.get(url, params={"semana": "1900-01-01"}, headers=headers, timeout=30)
    last = requests.get(url, params={"semana": "2199-12-31"}, headers=headers, timeout=30)
    assert first.status_code == last.status_code == 200, (first.text, last.text)
    assert datetime.fromisoformat(first.json()["desde"]) >= datetime(1900, 1, 1, tzinfo=UTC)
    # Madrid kept local mean time (-00:14:44) until 1901: RFC 3339 has no seconds in an offset, so such an instant
    # is given in UTC rather than with an offset no client parses.
    for answer in (first, last):
        for key in ("desde", "hasta"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", answer.json()[key]), answer.json()[key]
    assert datetime.fromisoformat(last.json()["desde"]).year == 2199


def _datetime_fields(schema: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """Names of the date-time properties of a (possibly $ref'd, possibly nullable) object schema."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    names = []
    for name, prop in (schema.get("properties") or {}).items():
        variants = prop.get("anyOf", [prop])
        if any(variant.get("format") == "date-time" for variant in variants):
            names.append(name)
    return names


def test_every_datetime_field_of_the_openapi_document_refuses_edge_values(live_server: LiveServer, build: Builders) -> None:
    admin = build.usuario(3)
    headers = build.headers(admin)
    spec = requests.get(live_server.url + "/api/v1/openapi.json", timeout=30).json()
    checked: list[str] = []
    for path, operations in spec["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            body = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            targets: list[tuple[str, str]] = [("body", name) for name in _datetime_fields(body, spec)] if body else []
            targets += [
                ("query", p["name"])
                for p in operation.get("parameters", [])
                if p.get("in") == "query" and any(v.get("format") == "date-time" for v in p.get("schema", {}).get("anyOf", [p.get("schema", {})]))
            ]
            for location, name in targets:
                # A query's values are all text: the numbers it can be sent are the texts of digits.
                for value in OUT_OF_RANGE + [n for n in NUMBERS if location == "body" or isinstance(n, str)]:
                    kwargs: dict[str, Any] = {"json": {name: value}} if location == "body" else {"params": {name: value}}
                    response = requests.request(method.upper(), live_server.url + concrete, headers=headers | {"If-Match": '"1"'}, timeout=30, **kwargs)
                    assert_422_naming(response, f"{location}.{name}")
                checked.append(f"{method.upper()} {path} {location}.{name}")
    # The document does describe them: tareas' schedule (create, PATCH, PUT) and the desde/hasta filters.
    assert {"POST /api/v1/tasks body.inicio_programado", "PATCH /api/v1/tasks/{tarea_id} body.fin_programado", "GET /api/v1/tasks query.desde"} <= set(
        checked
    ), checked
    assert "GET /api/v1/eventos query.hasta" in checked, checked


def _session(live_server: LiveServer, email: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(live_server.url + "/login", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = session.post(live_server.url + "/login", data={"csrf_token": token, "email": email, "password": password}, timeout=30)
    assert response.status_code == 200 and "/login" not in response.url, response.status_code
    return session


def test_new_tarea_form_refuses_out_of_range_instants_naming_the_field(live_server: LiveServer, build: Builders, database_url: str) -> None:
    supervisor = build.usuario(2)
    session = _session(live_server, supervisor.email, PASSWORD)
    for n, value in enumerate(OUT_OF_RANGE[:2]):
        page = session.get(live_server.url + "/tareas/nueva", timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        form = {"csrf_token": token, "codigo": f"A1-FORM-{n}", "titulo": "Tarea del formulario", "tipo": "patrullaje", "inicio_programado": value}
        response = session.post(live_server.url + "/tareas/nueva", data=form, timeout=30)
        assert response.status_code == 422
        assert 'id="error-inicio_programado"' in response.text
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM tareas")
        assert cur.fetchone() == (0,)
    conn.close()


@pytest.mark.parametrize("column", ["inicio_programado", "fin_programado", "inicio_real", "fin_real", "pausado_en"])
def test_database_refuses_instants_outside_the_window(database_url: str, build: Builders, column: str) -> None:
    admin = build.usuario(3)
    tarea = build.tarea(admin, inicio_programado=None, fin_programado=None)
    values = ["9999-12-31T23:59:59-14:00", "infinity", "2200-01-01T00:00:00Z"]
    extra = ", inicio_real = '1900-01-01Z'" if column == "fin_real" else ""  # fin_real needs an earlier inicio_real
    if column != "fin_real":  # (a far-past fin_real would also break fin_real >= inicio_real)
        values += ["0001-01-01T00:00:00+14:00", "-infinity", "1899-12-31T23:59:59Z"]
    conn = psycopg2.connect(database_url)
    try:
        for value in values:
            with pytest.raises(psycopg2.errors.CheckViolation) as refused, conn, conn.cursor() as cur:
                cur.execute(f"UPDATE tareas SET {column} = %s{extra} WHERE id = %s", (value, tarea.id))
            assert refused.value.diag.constraint_name == f"ck_tareas_{column}_rango"
    finally:
        conn.close()


def test_a_stored_out_of_range_instant_never_breaks_a_read(live_server: LiveServer, build: Builders, database_url: str) -> None:
    """A row from before the constraints (or an old dump): lists, detail, board summary and writes still answer."""
    admin = build.usuario(3)
    supervisor = build.usuario(2)
    tarea = build.tarea(admin, delegado_usuario_id=supervisor.id)
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("ALTER TABLE tareas DROP CONSTRAINT IF EXISTS ck_tareas_inicio_programado_rango, DROP CONSTRAINT ck_tareas_programacion_coherente")
    try:
        cur.execute("UPDATE tareas SET inicio_programado = '9999-12-31T23:59:59-14:00' WHERE id = %s", (tarea.id,))
        for usuario in (admin, supervisor):
            headers = build.headers(usuario)
            listing = requests.get(live_server.url + "/api/v1/tasks", headers=headers, timeout=30)
            assert listing.status_code == 200, listing.text
            assert listing.json()["items"][0]["inicio_programado"].startswith("9999-12-31T23:59:59")
            for path in (
                f"/api/v1/tasks/{tarea.id}",
                f"/api/v1/tasks/{tarea.id}/historial",
                "/api/v1/dashboard/resumen",
                "/api/v1/tasks?sort=inicio_programado",
            ):
                assert requests.get(live_server.url + path, headers=headers, timeout=30).status_code == 200, path
        headers = build.headers(admin)
        etag = requests.get(f"{live_server.url}/api/v1/tasks/{tarea.id}", headers=headers, timeout=30).headers["ETag"]
        repaired = requests.patch(
            f"{live_server.url}/api/v1/tasks/{tarea.id}",
            json={"inicio_programado": "2026-01-01T08:00:00+01:00"},
            headers=headers | {"If-Match": etag},
            timeout=30,
        )
        assert repaired.status_code == 200, repaired.text  # an API call can repair it
        assert datetime.fromisoformat(repaired.json()["inicio_programado"]) == datetime(2026, 1, 1, 7, tzinfo=UTC)
    finally:
        cur.execute("UPDATE tareas SET inicio_programado = NULL WHERE inicio_programado >= '2200-01-01Z'")
        cur.execute(
            "ALTER TABLE tareas ADD CONSTRAINT ck_tareas_inicio_programado_rango CHECK (inicio_programado >= '1900-01-01T00:00:00+00:00' AND inicio_programado < '2200-01-01T00:00:00+00:00')"
        )
        cur.execute(
            "ALTER TABLE tareas ADD CONSTRAINT ck_tareas_programacion_coherente"
            " CHECK (fin_programado IS NULL OR inicio_programado IS NULL OR fin_programado > inicio_programado)"
        )
        conn.close()


@pytest.mark.parametrize("offset", ["+23:59", "-23:59", "+15:59"])
def test_an_instant_with_any_offset_iso_8601_allows_is_the_same_instant_stored(live_server: LiveServer, build: Builders, offset: str) -> None:
    """PostgreSQL takes offsets up to ±15:59 only; the instant is stored in UTC, whatever offset it came with,
    for tareas and turnos alike (the turno's used to be refused with the database's anonymous "out of range")."""
    sup = build.usuario(2)
    headers = build.headers(sup)
    inicio = datetime.fromisoformat(f"2030-06-01T12:00:00{offset}")
    body = tarea_body(f"OFF-{'P' if offset[0] == '+' else 'M'}{offset[1:3]}", inicio_programado=inicio.isoformat())
    created = requests.post(live_server.url + "/api/v1/tasks", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    assert datetime.fromisoformat(created.json()["inicio_programado"]) == inicio
    efectivo = build.efectivo()
    turno = {"efectivo_id": efectivo.id, "inicio": inicio.isoformat(), "fin": (inicio.replace(hour=20)).isoformat()}
    response = requests.post(live_server.url + "/api/v1/turnos", json=turno, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    assert datetime.fromisoformat(response.json()["items"][0]["inicio"]) == inicio
