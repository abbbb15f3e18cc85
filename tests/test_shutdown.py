"""Graceful shutdown: SIGTERM finishes the requests in flight and exits 0."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.builders import Builders
from tests.conftest import start_gunicorn
from tests.wsclient import Closed, WsClient


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
