"""Test fixtures: one real PostgreSQL per test process (TEST_DATABASE_URL or an embedded server), clean tables per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import TestingConfig  # noqa: E402 - after sys.path points at the repository root
from gad import create_app  # noqa: E402 - after sys.path points at the repository root
from gad.embedded import EmbeddedPostgres, free_port, wait_until_accepting  # noqa: E402 - after sys.path points at the repository root
from gad.principal_cache import principals  # noqa: E402 - after sys.path points at the repository root
from gad.realtime import chain  # noqa: E402 - after sys.path points at the repository root
from tests.builders import Builders  # noqa: E402 - after sys.path points at the repository root

# Chromium fixtures (``pw``, ``browser``) for every browser suite, defined once.
pytest_plugins = ["tests.support.browser"]

TEST_DB_NAME = "gad_test"
# Every table the app writes, emptied between tests (cheaper than re-creating the schema).
TABLES = "notificacion_entregas, notificaciones, alertas, procedencias, sesiones, login_intentos, login_cuentas, limites_contador, auditoria_anclas, security_tallies, eventos, historial_estados, turnos, licencias, asignaciones, idempotency_keys, tokens_revocados, tareas, efectivos, usuarios"


def _server_url() -> tuple[str, EmbeddedPostgres | None]:
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return explicit.replace("postgresql+psycopg2://", "postgresql://"), None
    datadir = Path(tempfile.mkdtemp(prefix="gad-test-pg-")) / "data"
    server = EmbeddedPostgres(datadir, port=free_port())
    url = server.start()
    wait_until_accepting(url)
    return url, server


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def recreate_database(server_url: str, name: str) -> str:
    # Parallel workers (pytest-xdist) sharing one TEST_DATABASE_URL server each get their own databases.
    name += os.environ.get("PYTEST_XDIST_WORKER", "").replace("gw", "_gw")
    admin = psycopg2.connect(_with_database(server_url, "postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return _with_database(server_url, name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL server (its maintenance database) for the whole run."""
    url, server = _server_url()
    yield url
    if server is not None:
        server.destroy()


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> str:
    """A freshly created test database migrated to head with the real ``flask db upgrade``."""
    return migrated_database(pg_server, TEST_DB_NAME)


def migrated_database(server_url: str, name: str) -> str:
    """Database ``name`` created afresh on ``server_url`` and migrated to head with the real ``flask db upgrade``."""
    url = recreate_database(server_url, name)
    env = os.environ | {"GAD_ENV": "testing", "DATABASE_URL": url, "TEST_DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    return url


def make_app(database_url: str, **overrides: Any) -> Flask:
    os.environ["TEST_DATABASE_URL"] = database_url
    config = TestingConfig()
    return create_app(config, overrides={"SQLALCHEMY_DATABASE_URI": database_url.replace("postgresql://", "postgresql+psycopg2://"), **overrides})


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    yield from disposed_after(make_app(database_url))


def disposed_after(application: Flask) -> Iterator[Flask]:
    """Yield ``application``, then close its connection pool (for fixtures: its database may be dropped next)."""
    yield application
    with application.app_context():
        from gad.extensions import db

        db.engine.dispose()


# What TRUNCATE … RESTART IDENTITY does, for the few rows a test leaves, without TRUNCATE's new files for every
# table and index (50–100 ms a test, a minute and more of a CI run): every row deleted with the foreign keys' and
# the log's guard triggers off for this transaction only (replication role: superuser, as the embedded server's
# is), and the tables' sequences back at their start.
_DELETE_ALL = (
    "BEGIN; SET LOCAL session_replication_role = replica; "
    + " ".join(f"DELETE FROM {table.strip()};" for table in TABLES.split(","))
    + " SELECT setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s JOIN pg_depend d ON d.objid = s.seqrelid"
    + f" AND d.deptype IN ('a', 'i') WHERE d.refobjid = ANY(ARRAY[{', '.join(repr(t.strip()) for t in TABLES.split(','))}]::regclass[]);"
    + " COMMIT;"
)


def clean_database(url: str) -> None:
    """Empty every table the app writes and re-anchor the event log's chain where the counter stands."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        # A module's own gunicorn (its sweeper, a socket's replay) may hold row locks on these tables while
        # they are emptied one by one: PostgreSQL may break the cycle by aborting the statement. The server
        # is idle between tests, so a second attempt finds nothing in its way.
        for attempt in range(5):
            try:
                try:
                    cur.execute(_DELETE_ALL)
                except psycopg2.errors.InsufficientPrivilege:  # a TEST_DATABASE_URL role that is no superuser
                    cur.execute("ROLLBACK")
                    cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
                break
            except psycopg2.errors.DeadlockDetected:
                cur.execute("ROLLBACK")
                if attempt == 4:
                    raise
                time.sleep(0.1)
        # Emergency numbers come from a sequence no table owns (RESTART IDENTITY leaves it): every test starts at 0001.
        cur.execute("ALTER SEQUENCE IF EXISTS emergencias_codigo_seq RESTART")
        # Emptying the log is a prune as far as the hash chain is concerned: anchor it where the counter stands.
        cur.execute("SELECT last_id, last_hash, now() FROM eventos_contador WHERE id = 1")
        last_id, last_hash, now = cur.fetchone()
        fields = {"pruned_up_to_id": last_id, "last_hash": last_hash, "pruned_count": 0, "actor": "tests", "created_at": now}
        cur.execute(
            "INSERT INTO auditoria_anclas (pruned_up_to_id, last_hash, pruned_count, actor, created_at, mac)"
            " VALUES (%(pruned_up_to_id)s, %(last_hash)s, %(pruned_count)s, %(actor)s, %(created_at)s, %(mac)s)",
            fields | {"mac": chain.anchor_mac(str(TestingConfig().AUDIT_KEY).encode(), **fields)},
        )
    conn.close()


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    if "database_url" not in request.fixturenames:
        yield
        return
    clean_database(request.getfixturevalue("database_url"))
    from gad.extensions import limiter

    try:
        limiter.reset()
    except Exception:
        pass
    yield


@pytest.fixture
def pg_datadir() -> Iterator[Path]:
    """A data directory for a PostgreSQL a test starts and stops itself.

    Not under pytest's tmp_path: as root the server runs as ``gadpg``, and every pytest run on the machine
    resets its base temp directory to mode 0700, which would lock that server out of its own files.
    """
    parent = Path(tempfile.mkdtemp(prefix="gad-test-pg-own-"))
    yield parent / "data"
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def app_with(database_url: str) -> Iterator[Callable[..., Flask]]:
    """Another app on the test database with some settings changed: app.config is read-only once built,
    so a test that needs another value builds an app with it (validated like any setting)."""
    built: list[Flask] = []

    def build(**settings: Any) -> Flask:
        built.append(make_app(database_url, **settings))
        return built[-1]

    yield build
    for application in built:
        with application.app_context():
            from gad.extensions import db

            db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def build(app: Flask) -> Builders:
    # No app context is held open here: requests must get their own g and session, as in production.
    return Builders(app)


@pytest.fixture
def listener_connected() -> Iterator[None]:
    """The token cache in use, as in a gunicorn worker whose event listener is connected."""
    principals.set_listener_connected(True)
    yield
    principals.set_listener_connected(False)


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: Any = None

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gunicorn(
    database_url: str,
    *,
    workers: int = 1,
    app_spec: str = "wsgi:app",
    extra_env: dict[str, str] | None = None,
    tmp: Path,
    own_process_group: bool = False,
    healthy: bool = True,
) -> LiveServer:
    """``own_process_group``: the master and its workers in a process group of their own, as a terminal's Ctrl-C
    reaches them (``os.killpg``). ``healthy=False``: returned as soon as it is started, its workers still booting."""
    port = free_port()
    env = os.environ | {
        "GAD_ENV": "development",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "testing-key-" + "x" * 40,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "LOGIN_RATE_LIMIT": "10000 per minute",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra_env or {})
    log_path = tmp / f"gunicorn-{port}.log"
    log = log_path.open("wb")
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = subprocess.Popen(
        [gunicorn, "-c", "gunicorn.conf.py", app_spec], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0 if own_process_group else None
    )
    url = f"http://127.0.0.1:{port}"
    if not healthy:
        return LiveServer(url, process, log_path, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            raise RuntimeError(f"gunicorn exited: {log_path.read_text()}")
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                return LiveServer(url, process, log_path, log)
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    process.wait()
    log.close()
    raise RuntimeError(f"gunicorn did not become healthy: {log_path.read_text()}")


def stop_gunicorn(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.log_file is not None:
        server.log_file.close()


@pytest.fixture(scope="session")
def live_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real gunicorn + gevent command serving the test database (one worker, like the benchmarks)."""
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path_factory.mktemp("live"))
    yield server
    stop_gunicorn(server)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[dict]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is required for the cache tests: apt-get install redis-server (.ci/run does)")
    port = free_port()
    state: dict = {"port": port, "url": f"redis://127.0.0.1:{port}/0"}

    def start() -> None:
        state["proc"] = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop() -> None:
        state["proc"].terminate()
        state["proc"].wait(timeout=10)

    state["start"], state["stop"] = start, stop
    start()
    yield state
    if state["proc"].poll() is None:
        stop()
