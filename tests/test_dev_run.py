"""README command 1 (``./scripts/run`` → ``python -m gad.dev``) and the demo that stays alive."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from flask import Flask

from gad.dev import port_is_free
from gad.embedded import EmbeddedPostgres, ensure_system_user, free_port
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


def test_a_port_a_stopped_server_left_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    """Right after ``./scripts/run`` is stopped with a client connected, its port has connections in TIME-WAIT for a
    minute; gunicorn binds it regardless (SO_REUSEADDR), so the check before starting must not call it taken."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn's: its connections inherit it
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first, as gunicorn does at shutdown: its side ends in TIME-WAIT
        client.recv(1)
        client.close()
        time.sleep(0.2)
    assert port_is_free(port)


def test_run_refuses_port_0_at_once(tmp_path: Path) -> None:
    env = os.environ | {"GAD_ENV": "development", "PORT": "0", "EMBEDDED_DB_DIR": str(tmp_path / "pg")}
    result = subprocess.run([sys.executable, "-m", "gad.dev"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "PORT=0" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pg").exists()


def test_run_reports_an_embedded_server_that_cannot_start_as_such_in_one_message(tmp_path: Path) -> None:
    datadir = tmp_path / "pg"
    datadir.mkdir()
    (datadir / "PG_VERSION").write_text("7\n")  # a data directory no server of ours can start
    env = os.environ | {"GAD_ENV": "development", "PORT": str(free_port()), "EMBEDDED_DB_DIR": str(datadir), "EMBEDDED_DB_PORT": str(free_port())}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "gad.dev"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "No arrancó PostgreSQL embebido: pg_ctl failed" in result.stderr and "server.log" in result.stderr
    assert "ocupado" not in result.stdout + result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="creates a system user: as root only, as CI and the image run")
def test_processes_starting_embedded_servers_at_once_all_find_the_system_user() -> None:
    """As root the embedded server runs as a system user made on first use; two test workers (or two starts) making
    it at once had one useradd fail ("already exists", or /etc/passwd locked) and that whole worker error."""
    name = f"gadpg-t{os.getpid()}"
    try:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: ensure_system_user(name), range(6)))
        assert results == [None] * 6
        assert pwd.getpwnam(name).pw_name == name
    finally:
        subprocess.run(["userdel", name], capture_output=True)


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
