"""Production readiness: multi-process metrics, logs, the release command, graceful shutdown, deploy files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import pytest
import requests

from gad.embedded import free_port
from tests.builders import Builders
from tests.conftest import ROOT, recreate_database, start_gunicorn, stop_gunicorn
from tests.wsclient import Closed, WsClient

STRONG_KEY = "prod-" + "Zk3-q9Lm_Wx7" * 4


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


@pytest.mark.slow
def test_request_log_is_one_json_line_with_request_id_and_no_secrets(database_url: str, tmp_path: Path, build: Builders) -> None:
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path, extra_env={"LOG_LEVEL": "INFO"})
    try:
        user = build.usuario(2)
        token = build.token(user)
        echoed = requests.get(server.url + "/api/v1/users/me", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "proxy-req-42"}, timeout=10)
        assert echoed.headers["X-Request-ID"] == "proxy-req-42"
        generated = requests.get(server.url + "/health?token=super-secret-query", timeout=10).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        requests.post(server.url + "/api/v1/auth/login", json={"email": user.email, "password": "hunter2-hunter2"}, timeout=10)
        time.sleep(0.5)
        log = server.log()
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"gad.access"' in line]
        me = next(line for line in lines if line.get("request_id") == "proxy-req-42")
        assert me["method"] == "GET" and me["path"] == "/api/v1/users/me" and me["status"] == 200 and me["user_id"] == user.id and me["duration_ms"] >= 0
        for secret in (token, "super-secret-query", "hunter2-hunter2"):
            assert secret not in log
    finally:
        stop_gunicorn(server)


def _production_env(database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAD_", "SECRET_KEY", "DATABASE_URL"))}
    # The image runs the release command and CMD by name from its PATH: put this environment's bin first.
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return env | {
        "GAD_ENV": "production",
        "SECRET_KEY": STRONG_KEY,
        "AUDIT_KEY": "prod-audit-" + "Qp4-r8Tn_Vy2" * 4,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "FLASK_APP": "wsgi",
        "WEB_CONCURRENCY": "1",
        "PATH": path,
    }


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.mark.slow
def test_release_command_then_image_cmd_serves_health_and_ready(pg_server: str, tmp_path: Path) -> None:
    url = recreate_database(pg_server, "gad_release")
    port = free_port()
    env = _production_env(url, port) | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    release = fly["deploy"]["release_command"].split()
    assert subprocess.run(release, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120).returncode == 0
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", _dockerfile(), re.M).group(1))  # type: ignore[union-attr]
    gunicorn = str(Path(sys.executable).with_name(cmd[0]))
    started = time.monotonic()
    log = (tmp_path / "prod.log").open("wb")
    process = subprocess.Popen([gunicorn, *cmd[1:]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() - started < 30, "not healthy within Fly's 30 s grace period"
            time.sleep(0.1)
        ready = requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).headers["Strict-Transport-Security"]
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
        log.close()


def test_failing_migration_exits_non_zero(pg_server: str) -> None:
    url = recreate_database(pg_server, "gad_release_broken")
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE usuarios (id int)")  # a conflicting table makes the first revision fail
    conn.close()
    result = subprocess.run(["flask", "db", "upgrade"], cwd=ROOT, env=_production_env(url, 0), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


@pytest.mark.slow
def test_sigterm_finishes_100_in_flight_requests_and_exits_zero(database_url: str, tmp_path: Path, build: Builders) -> None:
    server = start_gunicorn(database_url, workers=1, app_spec="tests.support.sleepy_wsgi:app", tmp=tmp_path, extra_env={"DB_MAX_OVERFLOW": "100"})
    sup = build.usuario(2)
    ws = WsClient(server.url, build.token(sup))
    ws.recv()
    results: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(101)

    def call() -> None:
        barrier.wait()
        response = requests.get(server.url + "/_test/pg-sleep", timeout=30)
        with lock:
            results.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(100)]
    for thread in threads:
        thread.start()
    barrier.wait()
    time.sleep(0.4)  # all 100 are in flight inside pg_sleep(1)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # the worker notices within its 1 s loop and closes the listener
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/health", timeout=2)
    with pytest.raises(Closed) as closed:
        ws.events(1, timeout=10)
    ws.close()
    for thread in threads:
        thread.join(30)
    assert Counter(results) == {200: 100}
    assert server.process.wait(timeout=30) == 0
    assert time.monotonic() - started < 20  # within gunicorn's graceful timeout
    assert closed.value.code == 1001
    if server.log_file is not None:
        server.log_file.close()


def test_deploy_files_keep_their_invariants() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert fly["app"] == "grupo-gad" and fly["primary_region"] == "mia"
    assert fly["deploy"]["release_command"] == "flask db upgrade" and fly["deploy"]["strategy"] == "rolling"
    assert fly["kill_signal"] == "SIGTERM"
    graceful = 20
    assert int(fly["kill_timeout"]) > graceful
    service = fly["http_service"]
    assert service["internal_port"] == 8080 and service["force_https"] is True and service["min_machines_running"] >= 1
    (check,) = service["checks"]
    assert (check["path"], check["method"], check["grace_period"], check["interval"], check["timeout"]) == ("/health", "GET", "30s", "15s", "10s")
    assert fly["metrics"] == {"port": 9091, "path": "/metrics"}  # the master's private metrics port (tests/test_serving.py)
    assert fly["vm"][0]["size"] == "shared-cpu-1x" and fly["vm"][0]["memory"] == "512mb"
    assert "SECRET_KEY" not in fly.get("env", {}) and "DATABASE_URL" not in fly.get("env", {})
    dockerfile = _dockerfile()
    assert dockerfile.count("FROM python:3.12-slim") == 2
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]' in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile and "EXPOSE 8080" in dockerfile
    assert "FLASK_APP=wsgi" in dockerfile
    assert "--mount=type=bind,from=build" in dockerfile and "COPY --from=build" not in dockerfile  # no wheel layer left in the image
    assert "compileall" in dockerfile  # workers cannot write bytecode (PYTHONDONTWRITEBYTECODE): ship it
    conf = (ROOT / "gunicorn.conf.py").read_text()
    assert 'os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20")' in conf and 'worker_class = "gevent"' in conf and "preload_app = False" in conf
    assert (ROOT / ".dockerignore").read_text().count(".venv") == 1
