"""Health and readiness: /health without the database, /health/ready bounded and naming what is wrong."""

from __future__ import annotations

import os
import time
from datetime import datetime

from flask.testing import FlaskClient

from tests.conftest import make_app, recreate_database


def test_health_reports_status_time_uptime_version_without_database(database_url: str) -> None:
    # Port 1: nothing listens there (a port beyond 65535 is now refused as a setting before any request).
    dead = make_app("postgresql://postgres@127.0.0.1:1/nowhere")
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
