"""Health, readiness, the problem+json envelope, OpenAPI, migrations, CLI and cooperative psycopg2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from tests.builders import Builders
from tests.conftest import ROOT, make_app, recreate_database, start_gunicorn, stop_gunicorn

PROBLEM = "application/problem+json"


def test_health_reports_status_time_uptime_version_without_database(database_url: str) -> None:
    dead = make_app(database_url.rsplit("/", 1)[0].replace("127.0.0.1:", "127.0.0.1:1") + "/nowhere")
    response = dead.test_client().get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert body["uptime"] >= 0 and isinstance(body["version"], str)


def test_ready_is_200_when_database_answers_and_schema_at_head(client: FlaskClient) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]


def test_ready_is_503_naming_database_when_it_is_down(database_url: str) -> None:
    closed_port_url = "postgresql://postgres@127.0.0.1:1/gad"
    response = (
        make_app(database_url, SQLALCHEMY_DATABASE_URI=closed_port_url.replace("postgresql://", "postgresql+psycopg2://")).test_client().get("/health/ready")
    )
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"]["ok"] is False


def test_ready_is_503_when_migrations_are_behind(pg_server: str) -> None:
    url = recreate_database(pg_server, "gad_unmigrated")
    response = make_app(url).test_client().get("/health/ready")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"]["ok"] is True and checks["migrations"]["ok"] is False


def test_ready_probe_is_bounded_when_database_hangs() -> None:
    # A socket that accepts but never answers: the probe must give up within its 2 s bound.
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    try:
        app = make_app(os.environ["TEST_DATABASE_URL"], SQLALCHEMY_DATABASE_URI=f"postgresql+psycopg2://postgres@127.0.0.1:{port}/gad")
        started = time.monotonic()
        response = app.test_client().get("/health/ready")
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert response.status_code == 503
    assert elapsed < 3.5


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/no/such/route", {}, 404),
        ("delete", "/health", {}, 405),
        ("post", "/api/v1/auth/login", {"data": "{not json", "content_type": "application/json"}, 400),
        ("post", "/api/v1/auth/login", {"json": {"email": 5}}, 422),
        ("post", "/api/v1/auth/login", {"data": "x" * (2 * 1024 * 1024), "content_type": "application/json"}, 413),
    ],
)
def test_every_error_is_problem_json(client: FlaskClient, method: str, path: str, kwargs: dict, status: int) -> None:
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]


def test_validation_problem_lists_field_paths(client: FlaskClient) -> None:
    body = client.post("/api/v1/auth/login", json={"email": 5}).get_json()
    fields = {error["field"] for error in body["errors"]}
    assert {"body.email", "body.password"} <= fields


def test_method_not_allowed_names_allowed_methods(client: FlaskClient) -> None:
    response = client.delete("/health")
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_problem_json_without_traceback(database_url: str) -> None:
    app = make_app(database_url, PROPAGATE_EXCEPTIONS=False, TESTING=False)

    @app.get("/_boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/_boom")
    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_openapi_document_is_generated_from_schemas(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/tasks" in spec["paths"] and "post" in spec["paths"]["/api/v1/tasks"]
    schemas = spec["components"]["schemas"]
    assert any(name.startswith("TareaIn") for name in schemas)


def test_docs_page_uses_only_local_assets(client: FlaskClient) -> None:
    page = client.get("/api/v1/docs/").get_data(as_text=True)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page
    assert "http://" not in page and "https://" not in page
    with client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200


def _flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_migrations_upgrade_check_downgrade_roundtrip(pg_server: str) -> None:
    url = recreate_database(pg_server, "gad_migrations")
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": url}
    for args in (("db", "upgrade"), ("db", "check"), ("db", "downgrade", "base"), ("db", "upgrade"), ("db", "check")):
        result = _flask(env, *args)
        assert result.returncode == 0, f"flask {' '.join(args)} failed: {result.stderr}"
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchone() is not None
    conn.close()


def test_database_enforces_domain_rules(app: Flask, build: Builders) -> None:
    admin = build.usuario(3)
    bad_rows = [
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version)"
        " VALUES (gen_random_uuid(), 'lower-case', 'Titulo valido', 'patrullaje', 3, 'programada', false, 0, {admin}, now(), now(), 1)",
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version)"
        " VALUES (gen_random_uuid(), 'OK-1', 'Tit', 'patrullaje', 3, 'programada', false, 0, {admin}, now(), now(), 1)",
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version, ubicacion_lat)"
        " VALUES (gen_random_uuid(), 'OK-2', 'Titulo valido', 'patrullaje', 3, 'programada', false, 0, {admin}, now(), now(), 1, 40.0)",
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version)"
        " VALUES (gen_random_uuid(), 'OK-3', 'Titulo valido', 'patrullaje', 3, 'EN_CURSO', false, 0, {admin}, now(), now(), 1)",
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version, inicio_programado, fin_programado)"
        " VALUES (gen_random_uuid(), 'OK-4', 'Titulo valido', 'patrullaje', 3, 'programada', false, 0, {admin}, now(), now(), 1, now(), now() - interval '1 hour')",
        "INSERT INTO usuarios (uuid, email, dni, nombre, apellido, nivel, password_hash, verificado, activo, intentos_fallidos, token_version, created_at, updated_at, version)"
        " VALUES (gen_random_uuid(), upper('{email}'), '99999999Z', 'N', 'Apellido', 1, 'x', true, true, 0, 1, now(), now(), 1)",
    ]
    conn = psycopg2.connect(os.environ["TEST_DATABASE_URL"])
    for statement in bad_rows:
        with pytest.raises(psycopg2.IntegrityError), conn.cursor() as cur:
            cur.execute(statement.format(admin=admin.id, email=admin.email))
        conn.rollback()
    conn.close()


def test_database_allows_one_active_assignment_per_efectivo(app: Flask, build: Builders) -> None:
    admin = build.usuario(3)
    efectivo = build.efectivo()
    first, second = build.tarea(admin), build.tarea(admin)
    build.asignacion(first, efectivo)
    with pytest.raises(Exception, match="uq_asignaciones_efectivo_activa"):
        build.asignacion(second, efectivo)


def test_cli_create_admin_from_environment_then_login(database_url: str, client: FlaskClient) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url, "GAD_ADMIN_PASSWORD": "a-strong-admin-pass"}
    result = _flask(env, "gad", "create-admin", "Chief@Gad.Test")
    assert result.returncode == 0, result.stderr
    login = client.post("/api/v1/auth/login", json={"email": "chief@gad.test", "password": "a-strong-admin-pass"})
    assert login.status_code == 200
    me = client.get("/api/v1/users/me", headers={"Authorization": "Bearer " + login.get_json()["access_token"]}).get_json()
    assert me["nivel"] == 3


def test_cli_create_admin_rejects_weak_password_and_duplicates(database_url: str) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url, "GAD_ADMIN_PASSWORD": "short"}
    weak = _flask(env, "gad", "create-admin", "weak@gad.test")
    assert weak.returncode != 0 and "at least" in weak.stderr
    env["GAD_ADMIN_PASSWORD"] = "a-strong-admin-pass"
    assert _flask(env, "gad", "create-admin", "dup@gad.test").returncode == 0
    duplicate = _flask(env, "gad", "create-admin", "DUP@gad.test")
    assert duplicate.returncode != 0 and "email" in duplicate.stderr


def test_cli_seed_demo_is_idempotent(database_url: str, app: Flask) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url}
    assert _flask(env, "gad", "seed-demo").returncode == 0

    def counts() -> tuple[int, ...]:
        with app.app_context():
            return tuple(db.session.execute(db.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in ("usuarios", "efectivos", "tareas", "eventos"))

    first = counts()
    assert _flask(env, "gad", "seed-demo").returncode == 0
    assert counts() == first
    with app.app_context():
        estados = set(db.session.execute(db.text("SELECT DISTINCT estado FROM tareas")).scalars())
        niveles = set(db.session.execute(db.text("SELECT DISTINCT nivel FROM usuarios")).scalars())
    assert estados == {"programada", "en_curso", "pausada", "finalizada", "cancelada"}
    assert niveles == {1, 2, 3}


@pytest.mark.slow
def test_gevent_worker_runs_two_pg_sleeps_concurrently(database_url: str, tmp_path: Path) -> None:
    server = start_gunicorn(database_url, workers=1, app_spec="tests.support.sleepy_wsgi:app", tmp=tmp_path)
    try:
        requests.get(server.url + "/_test/pg-sleep", timeout=10)  # warm the pool
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: requests.get(server.url + "/_test/pg-sleep", timeout=10), range(2)))
        elapsed = time.monotonic() - started
    finally:
        stop_gunicorn(server)
    assert all(r.status_code == 200 for r in results)
    assert elapsed < 1.7, f"two pg_sleep(1) took {elapsed:.2f}s on one gevent worker: psycopg2 is blocking the hub"
