"""Graceful shutdown: SIGTERM finishes the requests in flight, answers what the kernel already accepted, and exits 0."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest
import requests

from tests.builders import Builders
from tests.conftest import start_gunicorn, stop_gunicorn
from tests.wsclient import Closed, WsClient

HELD_LOCK = 4242  # the advisory lock that keeps tests/support/sleepy_wsgi.py's /_test/held requests waiting


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def _held_requests(database_url: str) -> int:
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%pg_advisory_xact_lock_shared%' AND pid <> pg_backend_pid()"
            )
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _refused(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False


@pytest.mark.slow
def test_sigterm_finishes_100_in_flight_requests_and_exits_zero(database_url: str, tmp_path: Path, build: Builders) -> None:
    # The requests wait inside PostgreSQL until the test lets them go (each used to sleep 1 s: on a loaded machine the
    # first had finished before the last had started, and the hundred were never in flight at once).
    server = start_gunicorn(database_url, workers=1, app_spec="tests.support.sleepy_wsgi:app", tmp=tmp_path, extra_env={"DB_MAX_OVERFLOW": "100"})
    gate = psycopg2.connect(database_url)
    gate.autocommit = True
    with gate.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (HELD_LOCK,))
    sup = build.usuario(2)
    ws = WsClient(server.url, build.token(sup))
    threads: list[threading.Thread] = []
    try:
        ws.recv()
        results: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(101)

        def call() -> None:
            barrier.wait()
            response = requests.get(server.url + f"/_test/held?lock={HELD_LOCK}", timeout=60)
            with lock:
                results.append(response.status_code)

        threads = [threading.Thread(target=call) for _ in range(100)]
        for thread in threads:
            thread.start()
        barrier.wait()
        _wait_for(lambda: _held_requests(database_url) >= 100, "all 100 requests in flight, waiting inside PostgreSQL", timeout=60)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        _wait_for(lambda: _refused(server.url + "/health"), "the worker stops accepting (it notices within its 1 s loop)")
        with gate.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (HELD_LOCK,))  # the requests in flight may finish now
        with pytest.raises(Closed) as closed:
            ws.events(1, timeout=10)
        for thread in threads:
            thread.join(30)
        assert Counter(results) == {200: 100}
        assert server.process.wait(timeout=30) == 0, server.log()
        assert time.monotonic() - started < 20  # within gunicorn's graceful timeout
        assert closed.value.code == 1001
    finally:
        ws.close()
        gate.close()  # its lock goes with it, whatever happened
        for thread in threads:
            thread.join(30)
        if server.process.poll() is None:
            stop_gunicorn(server)
        elif server.log_file is not None:
            server.log_file.close()


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c", "sigterm-at-fork", "sigterm-mid-boot"])
def test_a_stop_leaves_no_traceback_in_the_log_and_exits_zero(database_url: str, tmp_path: Path, stop: str) -> None:
    """Every stop printed tracebacks from each worker: "Exception ignored in _removeHandlerRef ... TypeError" as the
    interpreter was torn down under gevent, and on Ctrl-C (SIGINT to the whole process group, then SIGQUIT from the
    master) a SystemExit raised inside the shutdown. In Fly's logs that reads as a crash at every deploy. A stop while
    a worker booted was worse: right after the fork it was lost (the child still had the master's handlers) and the
    master waited out the graceful timeout; later, while the app was imported, the stop's own handler imported the
    hub from inside that import, which failed as a circular import, a boot error, and the master exited 1."""
    booting = stop in {"sigterm-at-fork", "sigterm-mid-boot"}
    server = start_gunicorn(database_url, workers=2, tmp=tmp_path, own_process_group=True, healthy=not booting, extra_env={"LOG_LEVEL": "INFO"})
    started = time.monotonic()
    try:
        if booting:
            _wait_for(lambda: server.log().count("Booting worker") == 2, "both workers booting")
        if stop == "sigterm-mid-boot":
            workers = re.findall(r"Booting worker with pid: (\d+)", server.log())
            # psycopg2 loaded: post_fork is importing gad.pg, or gunicorn has gone on to import the app.
            _wait_for(lambda: all("_psycopg" in Path(f"/proc/{pid}/maps").read_text() for pid in workers), "both workers mid-boot")
        if not booting:
            assert requests.get(server.url + "/health", timeout=10).status_code == 200
        if stop == "ctrl-c":
            os.killpg(server.process.pid, signal.SIGINT)
        else:
            server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0, server.log()
    finally:
        if server.process.poll() is None:
            stop_gunicorn(server)
        elif server.log_file is not None:
            server.log_file.close()
    log = server.log()
    assert log.count("Worker exiting") == 2, log  # each worker stopped, none killed after the graceful timeout
    assert time.monotonic() - started < 15
    assert "Traceback" not in log and "Exception ignored" not in log and "failed with" not in log and "ERROR" not in log, log


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    match = re.search(rb"^content-length:\s*(\d+)", head, re.I | re.M)
    return bool(sep) and head.startswith(b"HTTP/1.1 200") and match is not None and len(body) == int(match.group(1))


@pytest.mark.slow
def test_sigterm_answers_every_connection_already_in_the_accept_queue_while_workers_are_busy(database_url: str, tmp_path: Path) -> None:
    busy_dir = tmp_path / "busy"
    busy_dir.mkdir()
    server = start_gunicorn(database_url, workers=2, app_spec="tests.support.busy_wsgi:app", tmp=tmp_path, extra_env={"GAD_TEST_BUSY_DIR": str(busy_dir)})
    host, port = server.url.removeprefix("http://").split(":")
    busy_results: list[int] = []
    threads = []
    try:
        for wanted in (1, 2):  # one CPU-bound request per worker: the second can only land on the idle one
            thread = threading.Thread(target=lambda: busy_results.append(requests.get(server.url + "/_test/busy", timeout=60).status_code))
            thread.start()
            threads.append(thread)
            deadline = time.monotonic() + 10
            while len(list(busy_dir.glob("busy-*"))) < wanted and time.monotonic() < deadline:
                time.sleep(0.02)
        assert len(list(busy_dir.glob("busy-*"))) == 2, "both workers should be busy"
        queued = []
        for _ in range(30):  # the kernel completes these handshakes; no worker is free to accept them
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gad\r\n\r\n")
            queued.append(sock)
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the master has closed its listener and signalled both workers, still busy
        (busy_dir / "release").touch()
        answers = [_read_response(sock) for sock in queued]
        for sock in queued:
            sock.close()
        for thread in threads:
            thread.join(30)
        assert sum(_complete(answer) for answer in answers) == len(queued), [answer[:60] for answer in answers if not _complete(answer)]
        assert busy_results == [200, 200]
        assert server.process.wait(timeout=30) == 0, server.log()
    finally:
        (busy_dir / "release").touch()
        if server.process.poll() is None:
            stop_gunicorn(server)
        elif server.log_file is not None:
            server.log_file.close()
