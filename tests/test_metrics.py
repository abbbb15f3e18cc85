"""Metrics: one scrape sums every worker, served by the gunicorn master on a private port; the CLI works without the multiprocess directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import pytest
import requests
from flask import Flask
from prometheus_client import generate_latest

from gad.embedded import free_port
from tests.builders import Builders
from tests.conftest import ROOT, start_gunicorn, stop_gunicorn


def _scrape(url: str, **headers: str) -> str:
    return requests.get(url + "/metrics", headers=headers, timeout=10).text


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
def test_one_scrape_sums_metrics_over_two_workers(database_url: str, tmp_path: Path, build: Builders) -> None:
    server = start_gunicorn(
        database_url, workers=2, tmp=tmp_path, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_TOKEN": "scrape-secret"}
    )
    try:
        user = build.usuario(1)
        auth = {"Authorization": "Bearer scrape-secret"}
        before = _sample(_scrape(server.url, **auth), "flask_http_request_duration_seconds_count", endpoint="health.health")
        with ThreadPoolExecutor(8) as pool:  # enough concurrency that both workers serve some
            list(pool.map(lambda _: requests.get(server.url + "/health", timeout=10), range(60)))
        requests.post(server.url + "/api/v1/auth/login", json={"email": user.email, "password": "wrong-password!"}, timeout=10)
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
        pids = set()
        for _ in range(6):  # whichever worker answers the scrape, it reports the sum over both
            text = _scrape(server.url, **auth)
            pids.add(len(list((tmp_path / "prom").glob("histogram_*.db"))))
            assert _sample(text, "flask_http_request_duration_seconds_count", endpoint="health.health", method="GET", status="200") == before + 60
            assert _sample(text, "gad_login_failures_total") == 1
        assert max(pids) >= 2  # samples from both worker processes were summed
        assert "gad_websockets_open" in text and "gad_db_pool_checked_out" in text and "gad_event_commit_to_send_seconds" in text
    finally:
        stop_gunicorn(server)


def test_cli_builds_without_the_multiprocess_directory(database_url: str, tmp_path: Path) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "absent")}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "current"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _private_scrape(port: int) -> str:
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


@pytest.mark.slow
def test_metrics_are_served_by_the_master_on_a_private_port_summed_over_two_workers(database_url: str, tmp_path: Path, build: Builders) -> None:
    metrics_port = free_port()
    server = start_gunicorn(
        database_url, workers=2, tmp=tmp_path, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_PORT": str(metrics_port)}
    )
    try:
        user = build.usuario(1)
        before = _sample(_private_scrape(metrics_port), "flask_http_request_duration_seconds_count", endpoint="health.health")
        with ThreadPoolExecutor(8) as pool:  # enough concurrency that both workers serve some
            statuses = list(pool.map(lambda _: requests.get(server.url + "/health", timeout=10).status_code, range(60)))
        assert statuses == [200] * 60
        requests.post(server.url + "/api/v1/auth/login", json={"email": user.email, "password": "wrong-password!"}, timeout=10)
        # Without METRICS_TOKEN nothing about metrics is reachable on the public port.
        public = requests.get(server.url + "/metrics", timeout=10)
        assert public.status_code == 404 and "flask_http_request" not in public.text
        text = _private_scrape(metrics_port)
        assert _sample(text, "flask_http_request_duration_seconds_count", endpoint="health.health", method="GET", status="200") == before + 60
        assert _sample(text, "gad_login_failures_total") == 1
        assert len(list((tmp_path / "prom").glob("histogram_*.db"))) >= 2  # samples from both worker processes were summed
        assert "gad_websockets_open" in text and "gad_db_pool_checked_out" in text and "gad_app_info" in text
        # The scrape itself is not a request to the app: it does not count itself.
        assert _sample(_private_scrape(metrics_port), "flask_http_request_duration_seconds_count") == _sample(text, "flask_http_request_duration_seconds_count")
    finally:
        stop_gunicorn(server)


@pytest.mark.slow
def test_a_public_metrics_path_exists_only_when_a_token_guards_it(database_url: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_PORT": str(metrics_port), "METRICS_TOKEN": "scrape-secret"}
    server = start_gunicorn(database_url, workers=2, tmp=tmp_path, extra_env=env)
    try:
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
        guarded = requests.get(server.url + "/metrics", headers={"Authorization": "Bearer scrape-secret"}, timeout=10)
        assert guarded.status_code == 200 and "flask_http_request_duration_seconds" in guarded.text
        assert "flask_http_request_duration_seconds" in _private_scrape(metrics_port)
    finally:
        stop_gunicorn(server)


def test_fly_scrapes_the_private_metrics_port_which_is_not_a_public_service() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    port = int(fly["env"]["METRICS_PORT"])
    assert fly["metrics"] == {"port": port, "path": "/metrics"}
    public_ports = {fly["http_service"]["internal_port"]} | {service["internal_port"] for service in fly.get("services", [])}
    assert port not in public_ports


def test_made_up_methods_are_counted_as_one_series_not_one_each(app: Flask) -> None:
    """Anyone could send "XQZT /health" with a new made-up method each time: each 405 became a new series, and
    20,000 of them grew a worker by 70 MB and a scrape to 24 MB (an unauthenticated memory exhaustion)."""
    client = app.test_client()
    registry = app.extensions["gad_metrics"].registry
    before = generate_latest(registry)
    for n in range(50):
        assert client.open("/health", method=f"MADEUP{n}").status_code == 405
    assert client.get("/health").status_code == 200
    after = generate_latest(registry).decode()
    assert "MADEUP" not in after
    assert _sample(after, "flask_http_request_total", method="other", status="405") == 50
    assert _sample(after, "flask_http_request_total", method="GET", status="200") >= 1
    assert len(after) - len(before) < 10_000  # a handful of new series, not fifty


def test_the_pool_gauges_count_the_connections_in_use_when_scraped(app: Flask) -> None:
    # Read from the pool at the scrape, not kept by checkout and checkin listeners (observability._track_pool).
    registry = app.extensions["gad_metrics"].registry

    def in_use() -> tuple[float, float]:
        text = generate_latest(registry).decode()
        return _sample(text, "gad_db_pool_checked_out"), _sample(text, "gad_db_pool_overflow")

    idle = in_use()
    with app.app_context():
        from gad.extensions import db

        size = db.engine.pool.size()
        for _ in range(2):  # the second time after dispose(), which gives the engine a new pool: counted too
            held = [db.engine.connect() for _ in range(2)]
            try:
                assert in_use() == (idle[0] + 2, idle[1])
            finally:
                for connection in held:
                    connection.close()
            assert in_use() == idle
            db.engine.dispose()
    assert size >= 2  # the two held were within the pool: no overflow to count


@pytest.mark.slow
def test_a_worker_writes_its_pool_gauges_for_the_masters_scrape(database_url: str, tmp_path: Path, build: Builders) -> None:
    """Under gunicorn the master sums what each worker wrote (multi-process mode): a worker's request waiting on a
    row lock holds a pooled connection, and the scrape shows it within the sampling interval, then shows it back."""
    metrics_port = free_port()
    server = start_gunicorn(
        database_url, workers=1, tmp=tmp_path, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_PORT": str(metrics_port)}
    )
    try:
        supervisor = build.usuario(2)
        tarea = build.tarea(supervisor)

        def checked_out_becomes(value: float) -> None:
            deadline = time.monotonic() + 10
            while _sample(_private_scrape(metrics_port), "gad_db_pool_checked_out") != value:
                assert time.monotonic() < deadline, f"gad_db_pool_checked_out never became {value}"
                time.sleep(0.2)

        checked_out_becomes(0)
        locker = psycopg2.connect(database_url)
        try:
            with locker.cursor() as cursor:
                cursor.execute("SELECT 1 FROM tareas WHERE id = %s FOR UPDATE", (tarea.id,))
            with ThreadPoolExecutor(1) as pool:
                edit = pool.submit(
                    requests.patch,
                    f"{server.url}/api/v1/tasks/{tarea.id}",
                    json={"titulo": "Editada tras la espera"},
                    headers=build.headers(supervisor) | {"If-Match": '"1"'},
                    timeout=30,
                )
                checked_out_becomes(1)  # the edit waits on the lock, holding its connection
                locker.commit()
                assert edit.result().status_code == 200
        finally:
            locker.close()
        checked_out_becomes(0)
    finally:
        stop_gunicorn(server)
