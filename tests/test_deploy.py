"""Deployment: the release command, a failing migration, and what the deploy files must mean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import psycopg2
import pytest
import requests

from gad.embedded import free_port
from gad.serve import GUNICORN_ARGS
from tests.conftest import ROOT, recreate_database

STRONG_KEY = "prod-" + "Zk3-q9Lm_Wx7" * 4


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
    assert fly["metrics"] == {"port": 9091, "path": "/metrics"}  # the master's private metrics port (tests/test_metrics.py)
    assert fly["vm"][0]["size"] == "shared-cpu-1x" and fly["vm"][0]["memory"] == "512mb"
    assert "SECRET_KEY" not in fly.get("env", {}) and "DATABASE_URL" not in fly.get("env", {})
    dockerfile = _dockerfile()
    assert dockerfile.count("FROM python:3.12-slim") == 2
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    # The command checks the settings, then execs exactly `gunicorn -c gunicorn.conf.py wsgi:app`.
    assert 'CMD ["python", "-m", "gad.serve"]' in dockerfile
    assert GUNICORN_ARGS == ["-c", "gunicorn.conf.py", "wsgi:app"]
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile and "EXPOSE 8080" in dockerfile
    assert "FLASK_APP=wsgi" in dockerfile
    assert "--mount=type=bind,from=build" in dockerfile and "COPY --from=build" not in dockerfile  # no wheel layer left in the image
    assert "compileall" in dockerfile  # workers cannot write bytecode (PYTHONDONTWRITEBYTECODE): ship it
    conf = (ROOT / "gunicorn.conf.py").read_text()
    assert "graceful_timeout = _settings.GUNICORN_GRACEFUL_TIMEOUT" in conf and 'worker_class = "gevent"' in conf and "preload_app = False" in conf
    assert 'env_int("GUNICORN_GRACEFUL_TIMEOUT", 20' in (ROOT / "config.py").read_text()
    assert (ROOT / ".dockerignore").read_text().count(".venv") == 1
