"""README command 1 (``./scripts/run`` → ``python -m gad.dev``) and the demo that stays alive."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from flask import Flask

from gad.embedded import EmbeddedPostgres, free_port
from gad.extensions import db
from gad.models import Efectivo, Tarea
from tests.conftest import ROOT
from tests.helpers import run_flask

pytestmark = pytest.mark.slow


def _dev(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gad.dev", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_run_says_the_port_is_taken_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = os.environ | {"GAD_ENV": "development", "PORT": str(port), "EMBEDDED_DB_DIR": str(tmp_path / "pg")}
        env.pop("DATABASE_URL", None)
        result = subprocess.run([sys.executable, "-m", "gad.dev"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"El puerto {port} está ocupado" in result.stderr
    assert "escuchando" not in result.stdout
    assert not (tmp_path / "pg").exists()  # no PostgreSQL was started for nothing


def test_run_prints_progress_and_sigterm_stops_gunicorn_and_the_embedded_postgresql(pg_datadir: Path) -> None:
    port, pg_port = free_port(), free_port()
    env = os.environ | {
        "GAD_ENV": "development",
        "PORT": str(port),
        "EMBEDDED_DB_DIR": str(pg_datadir),
        "EMBEDDED_DB_PORT": str(pg_port),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DATABASE_URL", None)
    process = _dev(env)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "GAD escuchando" in line:
                break
        output = "".join(lines)
        assert "==> Arrancando PostgreSQL embebido" in output
        assert "==> Aplicando migraciones" in output
        assert "posiciones de demostración actualizadas" in output
        assert "GAD escuchando" in output, output
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        assert EmbeddedPostgres(pg_datadir, port=pg_port).is_running()
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert "Parando PostgreSQL embebido" in rest
    assert not EmbeddedPostgres(pg_datadir, port=pg_port).is_running()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)


def test_demo_positions_are_refreshed_and_the_patrol_moves_and_creates_tareas(database_url: str, app: Flask) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url}
    assert run_flask(env, "gad", "seed-demo").returncode == 0
    with app.app_context():
        # Fifteen minutes later, as a newcomer's demo was: every position too old for dispatch.
        db.session.execute(db.update(Efectivo).values(posicion_en=datetime.now(UTC) - timedelta(hours=1)))
        db.session.commit()
    refreshed = run_flask(env, "gad", "demo-refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    with app.app_context():
        ages = [datetime.now(UTC) - e.posicion_en for e in db.session.scalars(db.select(Efectivo).where(Efectivo.codigo_interno.like("EF-%")))]
        before = {e.id: (e.lat, e.lon) for e in db.session.scalars(db.select(Efectivo))}
        tareas_before = db.session.scalar(db.select(db.func.count()).select_from(Tarea))
    assert len(ages) == 8 and max(ages) < timedelta(minutes=1)
    patrol = run_flask(env, "gad", "demo-patrol", "--steps", "3", "--interval", "0", "--tarea-every", "2")
    assert patrol.returncode == 0, patrol.stderr
    with app.app_context():
        after = {e.id: (e.lat, e.lon) for e in db.session.scalars(db.select(Efectivo))}
        tareas_after = db.session.scalar(db.select(db.func.count()).select_from(Tarea))
    assert sum(1 for k in before if before[k] != after[k]) == 6  # the six demo efectivos with no usuario walk; the two officers do not
    assert tareas_after == tareas_before + 1
