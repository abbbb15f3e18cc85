"""Fault injection: PostgreSQL stopped under steady load, then started again; nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from gad.embedded import EmbeddedPostgres, free_port, wait_until_accepting
from tests.conftest import ROOT, LiveServer, start_gunicorn, stop_gunicorn
from tests.wsclient import WsClient

pytestmark = pytest.mark.slow
CONNECT_TIMEOUT_S = 2


def _database_with_an_admin(pg_datadir: Path) -> tuple[EmbeddedPostgres, str]:
    """A PostgreSQL of this test's own (it will be stopped or frozen), migrated, with one administrador."""
    pg = EmbeddedPostgres(pg_datadir, port=free_port())
    url = pg.start()
    wait_until_accepting(url)
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": url, "GAD_ADMIN_PASSWORD": "fault-admin-password"}
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([*flask, "gad", "create-admin", "fault@gad.test"], cwd=ROOT, env=env, check=True, capture_output=True)
    return pg, url


def _admin_token(server: LiveServer) -> str:
    return str(server.post("/api/v1/auth/login", json={"email": "fault@gad.test", "password": "fault-admin-password"}).json()["access_token"])


def test_database_outage_fails_fast_then_recovers_without_losing_acknowledged_writes(tmp_path: Path, pg_datadir: Path) -> None:
    pg, url = _database_with_an_admin(pg_datadir)
    server = start_gunicorn(url, workers=2, tmp=tmp_path, extra_env={"DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S)})
    acknowledged: list[str] = []
    when_ack: dict[str, tuple[float, str | None]] = {}
    outcomes: list[tuple[float, int, float]] = []  # (when, status, duration)
    stop = threading.Event()
    listener: WsClient | None = None
    try:
        token = _admin_token(server)
        headers = {"Authorization": f"Bearer {token}"}
        listener = WsClient(server.url, token)
        listener.recv()
        listener.send("unsubscribe", topics=["seguridad", "efectivos"])
        listener.recv()

        def steady_writer(worker: int) -> None:
            n = 0
            while not stop.is_set():
                codigo = f"F{worker}-{n:05d}"
                n += 1
                started = time.monotonic()
                try:
                    response = requests.post(
                        server.url + "/api/v1/tasks", json={"codigo": codigo, "titulo": "Bajo carga", "tipo": "patrullaje"}, headers=headers, timeout=30
                    )
                    status = response.status_code
                    if status == 201:
                        acknowledged.append(codigo)
                        when_ack[codigo] = (time.monotonic(), response.headers.get("X-Request-ID"))
                    else:
                        assert response.headers["Content-Type"] == "application/problem+json"
                except requests.RequestException:
                    status = 0
                outcomes.append((time.monotonic(), status, time.monotonic() - started))
                time.sleep(0.02)

        writers = [threading.Thread(target=steady_writer, args=(w,)) for w in range(4)]
        for writer in writers:
            writer.start()
        time.sleep(1.5)
        down_at = time.monotonic()
        pg.stop("immediate")
        time.sleep(3)
        assert requests.get(server.url + "/health", timeout=5).status_code == 200
        ready = requests.get(server.url + "/health/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["checks"]["database"]["ok"] is False
        restart_at = time.monotonic()
        pg.start()  # returns once PostgreSQL accepts connections again
        up_at = time.monotonic()
        time.sleep(6)
        stop.set()
        for writer in writers:
            writer.join(30)

        during = [o for o in outcomes if down_at + 0.5 < o[0] < restart_at]
        assert during and all(status == 503 for _, status, _ in during), [o for o in during if o[1] != 503][:5]
        assert max(duration for _, _, duration in during) < CONNECT_TIMEOUT_S + 1.5  # fail fast, not the 30 s pool timeout
        recovered = [o for o in outcomes if o[1] == 201 and o[0] > up_at]
        assert recovered and min(o[0] for o in recovered) - up_at < 5  # back by itself within 5 s, no restart
        assert requests.get(server.url + "/health/ready", timeout=5).status_code == 200

        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT codigo FROM tareas")
            stored = {row[0] for row in cur.fetchall()}
        conn.close()
        lost = set(acknowledged) - stored
        assert not lost, [(c, round(when_ack[c][0] - down_at, 3), when_ack[c][1]) for c in lost]  # no request that got a 2xx lost its write

        # The listener came back too: it has every committed creation, in order. A write PostgreSQL
        # committed just as it went down may never have been acknowledged (the reply was lost with the
        # connection), yet it is committed, so it must be delivered all the same.
        assert len(stored) >= len(acknowledged)
        frames = listener.events(len(stored), timeout=30)
        seen = [f["data"]["codigo"] for f in frames if f["event_type"] == "task_created"]
        assert set(seen) == stored
        ids = [f["id"] for f in frames]
        assert ids == sorted(ids) and len(ids) == len(set(ids))
    finally:
        stop.set()
        if listener is not None:
            listener.close()  # also on failure, or its socket is collected during a later test
        stop_gunicorn(server)
        pg.destroy()


STATEMENT_TIMEOUT_S = 2
# A pooled connection's ping waits the statement timeout plus gad.pg's margin, then one reconnect waits
# the connect timeout: past that, a request is hanging.
ANSWER_BOUND_S = STATEMENT_TIMEOUT_S + 2 + CONNECT_TIMEOUT_S + 2.5


# /users/me needs nothing but the verified token, which a worker may remember for reads (README: Cache).
ANSWERED_FROM_MEMORY = {"/api/v1/users/me"}


def _server_processes(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, checkpointer...): all of them must freeze."""
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            pids.append(int(stat.parent.name))
    return pids


def _every_kind_of_request(base: str, headers: dict[str, str], tarea: dict[str, object]) -> list[tuple[str, str, dict[str, object]]]:
    etag = {"If-Match": f'"{tarea["version"]}"'}
    return [
        ("GET", "/api/v1/tasks", {}),
        ("GET", f"/api/v1/tasks/{tarea['id']}", {}),
        ("GET", "/api/v1/users/me", {}),
        ("GET", "/api/v1/efectivos", {}),
        ("GET", "/api/v1/dashboard/resumen", {}),
        ("GET", "/api/v1/eventos", {}),
        ("POST", "/api/v1/tasks", {"json": {"codigo": "OUT-1", "titulo": "Durante el corte", "tipo": "patrullaje"}}),
        ("PATCH", f"/api/v1/tasks/{tarea['id']}", {"json": {"titulo": "Cambio durante el corte"}, "headers": etag}),
        ("POST", f"/api/v1/tasks/{tarea['id']}/estado", {"json": {"estado": "en_curso"}, "headers": etag}),
        ("POST", "/api/v1/tasks/emergency", {"json": {"lat": 40.4, "lng": -3.7}}),
        ("POST", "/api/v1/auth/login", {"json": {"email": "fault@gad.test", "password": "fault-admin-password"}}),
    ]


def _assert_all_503_fast_and_logged(server: LiveServer, headers: dict[str, str], tarea: dict[str, object], phase: str) -> None:
    outcomes: list[tuple[str, requests.Response | BaseException, float]] = []

    def one(method: str, path: str, kwargs: dict[str, object], request_id: str) -> None:
        started = time.monotonic()
        kwargs = dict(kwargs)  # the same request kinds are sent twice: never mutate the shared ones
        extra = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
        try:
            response = requests.request(method, server.url + path, headers=headers | extra | {"X-Request-ID": request_id}, timeout=60, **kwargs)  # type: ignore[arg-type]
            outcomes.append((request_id, response, time.monotonic() - started))
        except requests.RequestException as exc:
            outcomes.append((request_id, exc, time.monotonic() - started))

    threads = [
        threading.Thread(target=one, args=(method, path, kwargs, f"{phase}-{n}"))
        for n, (method, path, kwargs) in enumerate(_every_kind_of_request(server.url, headers, tarea) * 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert len(outcomes) == len(threads)
    log = server.log()
    print(f"database {phase}: {len(outcomes)} requests, slowest answer {max(took for _, _, took in outcomes):.2f} s")  # the README's figure
    for request_id, response, took in outcomes:
        assert isinstance(response, requests.Response), (phase, request_id, response)
        if response.status_code == 200 and response.request.path_url in ANSWERED_FROM_MEMORY:
            continue
        assert response.status_code == 503, (phase, request_id, response.request.method, response.request.path_url, response.status_code, response.text[:200])
        assert response.headers["Content-Type"] == "application/problem+json" and int(response.headers["Retry-After"]) > 0
        assert took < ANSWER_BOUND_S, (phase, request_id, response.request.path_url, took)
        assert f'"client_request_id": "{request_id}"' in log and '"status": 503' in log, (phase, request_id)  # every one is logged


def test_database_frozen_or_stopped_every_request_is_503_with_retry_after_in_bounded_time(tmp_path: Path, pg_datadir: Path) -> None:
    pg, url = _database_with_an_admin(pg_datadir)
    extra_env = {"DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S), "DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_S * 1000), "LOG_LEVEL": "INFO"}
    server = start_gunicorn(url, workers=2, tmp=tmp_path, extra_env=extra_env)
    frozen: list[int] = []
    try:
        token = _admin_token(server)
        headers = {"Authorization": f"Bearer {token}"}
        tarea = server.post("/api/v1/tasks", json={"codigo": "BEFORE-1", "titulo": "Antes del corte", "tipo": "patrullaje"}, headers=headers).json()
        for method, path, kwargs in _every_kind_of_request(server.url, headers, tarea)[:6]:
            assert requests.request(method, server.url + path, headers=headers, timeout=30, **kwargs).status_code == 200  # type: ignore[arg-type]

        # Frozen: the kernel still accepts connections and acknowledges packets, nobody answers.
        postmaster = int((pg_datadir / "postmaster.pid").read_text().splitlines()[0])
        frozen = _server_processes(postmaster)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        _assert_all_503_fast_and_logged(server, headers, tarea, "frozen")
        ready = requests.get(server.url + "/health/ready", timeout=30)
        assert ready.status_code == 503
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        frozen = []

        # Stopped: connections are refused at once.
        pg.stop("immediate")
        _assert_all_503_fast_and_logged(server, headers, tarea, "stopped")
        assert requests.get(server.url + "/health", timeout=5).status_code == 200
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        stop_gunicorn(server)
        pg.destroy()


def test_a_transaction_left_idle_holding_the_event_counter_is_ended_by_the_server(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker frozen (or cut off from the database) mid-request kept its transaction open with the event log's
    counter locked, and every write of the service waited on it until gunicorn killed the worker, or for hours
    behind a network partition. PostgreSQL now ends such a session; a reader that lifts the limit keeps its own."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from gad.db_session import allow_idle_transaction
    from gad.extensions import db
    from tests.conftest import disposed_after, make_app

    monkeypatch.setenv("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "300")
    for app in disposed_after(make_app(database_url)):
        with app.app_context():
            with db.engine.connect() as stuck:
                stuck.execute(text("SELECT last_id FROM eventos_contador WHERE id = 1 FOR UPDATE"))
                time.sleep(1.0)  # the worker stops answering here
                writer = psycopg2.connect(database_url)
                try:
                    with writer.cursor() as cur:
                        cur.execute("SET lock_timeout = '3s'")
                        cur.execute("SELECT last_id FROM eventos_contador WHERE id = 1 FOR UPDATE")  # not kept waiting
                finally:
                    writer.rollback()
                    writer.close()
                with pytest.raises(OperationalError):
                    stuck.execute(text("SELECT 1"))
            allow_idle_transaction()
            time.sleep(1.0)  # a streamed export while its client reads
            assert db.session.execute(text("SELECT 1")).scalar() == 1
            db.session.rollback()


def test_an_import_whose_source_is_slow_outlives_the_idle_transaction_limit(pg_server: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GRUPO_GAD import reads GAD's assignment holds, then scans the source for near-duplicates before its first
    batch. That transaction was still under the idle limit: a source slower than the limit ended GAD's connection
    and the import died with a traceback."""
    from gad.extensions import db
    from gad.importers import grupo_gad
    from tests import grupo_gad_source as legacy
    from tests.conftest import disposed_after, make_app, recreate_database

    source_url = recreate_database(pg_server, "grupo_gad_slow_source")
    legacy.create_schema(source_url)
    legacy.fill(source_url, usuarios=10, efectivos=5, tareas=10)
    scan = grupo_gad.Importer._near_duplicates

    def slow_scan(self: grupo_gad.Importer, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.6)  # a remote or busy source: each scan outlasts the limit below
        return scan(self, *args, **kwargs)

    monkeypatch.setattr(grupo_gad.Importer, "_near_duplicates", slow_scan)
    monkeypatch.setenv("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "300")
    for app in disposed_after(make_app(database_url)):
        with app.app_context():
            source = grupo_gad.open_source(source_url)
            try:
                importer = grupo_gad.Importer(source, dry_run=False, skip_invalid=True, batch_size=50, end_batch=db.session.commit, progress=lambda *a: None)
                report = importer.run()
                importer.record_finished()
                db.session.commit()
            finally:
                source.close()
            assert report.stopped is None
            assert all(report.counts[entidad].imported > 0 for entidad in ("usuario", "efectivo", "tarea", "historial")), report.summary()
