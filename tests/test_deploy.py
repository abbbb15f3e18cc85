"""Deployment: the release command, a failing migration, and what the deploy files must mean."""

from __future__ import annotations

import json
import os
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


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        instruction, _, args = logical.strip().partition(" ")
        logical = ""
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def _gunicorn_settings(env: dict[str, str]) -> dict[str, object]:
    """gunicorn.conf.py's settings as gunicorn reads them (the module's globals), under ``env``."""
    code = "import json, runpy; g = runpy.run_path('gunicorn.conf.py'); print(json.dumps({k: v for k, v in g.items() if isinstance(v, (int, str, bool))}))"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GAD_", "GUNICORN_", "DATABASE_URL", "SECRET_KEY"))}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=base | {"GAD_ENV": "development"} | env, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_release_command_then_image_cmd_serves_health_and_ready(pg_server: str, tmp_path: Path) -> None:
    url = recreate_database(pg_server, "gad_release")
    port = free_port()
    env = _production_env(url, port) | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    release = fly["deploy"]["release_command"].split()
    assert subprocess.run(release, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120).returncode == 0
    cmd = json.loads(next(args for instruction, args in _dockerfile_stages()[-1] if instruction == "CMD"))
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
    stages = _dockerfile_stages()
    assert [stage[0][1].split()[0] for stage in stages] == ["python:3.12-slim", "python:3.12-slim"]  # build, runtime
    runtime = stages[-1]
    values = {name: " ".join(args for instruction, args in runtime if instruction == name) for name in ("USER", "EXPOSE", "CMD", "HEALTHCHECK")}
    assert values["USER"] and values["USER"] != "root"
    assert values["EXPOSE"] == "8080"
    # The command checks the settings, then execs exactly `gunicorn -c gunicorn.conf.py wsgi:app`.
    assert json.loads(values["CMD"]) == ["python", "-m", "gad.serve"] and GUNICORN_ARGS == ["-c", "gunicorn.conf.py", "wsgi:app"]
    assert "/health" in values["HEALTHCHECK"]
    env = dict(item.split("=", 1) for instruction, args in runtime if instruction == "ENV" for item in args.split())
    assert env["FLASK_APP"] == "wsgi" and env["GAD_ENV"] == "production" and env["PORT"] == "8080"
    runs = [args for instruction, args in runtime if instruction == "RUN"]
    copies = [args for instruction, args in runtime if instruction == "COPY"]
    assert any(run.startswith("--mount=type=bind,from=build") for run in runs) and not any("--from=build" in c for c in copies)  # no wheel layer
    assert any("compileall" in run for run in runs)  # workers cannot write bytecode (PYTHONDONTWRITEBYTECODE): ship it
    settings = _gunicorn_settings({"GUNICORN_GRACEFUL_TIMEOUT": "7"})
    assert settings["graceful_timeout"] == 7  # read from the environment, through config.py
    settings = _gunicorn_settings({})
    assert settings["worker_class"] == "gevent" and settings["preload_app"] is False
    assert int(fly["kill_timeout"]) > settings["graceful_timeout"] == graceful
    assert (ROOT / ".dockerignore").read_text().count(".venv") == 1
