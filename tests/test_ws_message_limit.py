"""Inbound websocket messages are capped (WS_MAX_MESSAGE_SIZE): an oversize one closes its socket with 1009."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import websocket
from flask import Flask

from config import ConfigError, load_config
from tests.builders import Builders
from tests.conftest import LiveServer
from tests.wsclient import Closed, WsClient

LIMIT = 64 * 1024  # WS_MAX_MESSAGE_SIZE's default, which the live server runs with
MESSAGE_TOO_BIG = 1009


def _subscribe_frame(size: int) -> str:
    """A valid subscribe frame of exactly ``size`` characters (JSON allows trailing whitespace)."""
    frame = json.dumps({"event_type": "subscribe", "data": {"topics": ["tareas"]}})
    return frame + " " * (size - len(frame))


def _opened(live_server: LiveServer, token: str) -> WsClient:
    client = WsClient(live_server.url, token)
    assert client.recv()["event_type"] == "connection_ack"
    return client


def _answers_subscribe(client: WsClient, frame: str) -> bool:
    client.ws.send(frame)
    while True:
        reply = client.recv()
        if reply["event_type"] == "subscriptions":
            return "tareas" in reply["data"]["topics"]


def _worker_pid(live_server: LiveServer) -> int:
    pid = live_server.process.pid
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_message_at_the_limit_is_taken(build: Builders, live_server: LiveServer) -> None:
    client = _opened(live_server, build.token(build.usuario(1)))
    try:
        assert _answers_subscribe(client, _subscribe_frame(LIMIT))
        assert _answers_subscribe(client, _subscribe_frame(100))  # and the socket goes on
    finally:
        client.close()


def test_message_one_past_the_limit_closes_with_1009_and_the_worker_serves_on(build: Builders, live_server: LiveServer) -> None:
    token = build.token(build.usuario(1))
    bystander = _opened(live_server, token)
    client = _opened(live_server, token)
    client.ws.send(_subscribe_frame(LIMIT + 1))
    with pytest.raises(Closed) as closed:
        while True:
            client.recv()
    assert closed.value.code == MESSAGE_TOO_BIG
    client.close()
    try:
        assert _answers_subscribe(bystander, _subscribe_frame(200))  # a socket open meanwhile is unaffected
        fresh = _opened(live_server, token)  # and the worker takes new ones
        assert _answers_subscribe(fresh, _subscribe_frame(LIMIT))
        fresh.close()
    finally:
        bystander.close()


def test_a_50_mb_message_is_not_buffered(build: Builders, live_server: LiveServer) -> None:
    # The reviewer's attack: 50 MB in one frame used to be read whole (worker RSS 83 -> 216 MB with a pong after it).
    token = build.token(build.usuario(1))
    worker = _worker_pid(live_server)
    # Reset the worker's peak resident size to its current one (proc(5), clear_refs): memory taken to hold
    # the message would be given back once it was handled, but it shows in the peak.
    Path(f"/proc/{worker}/clear_refs").write_text("5")
    before = _status_kb(worker, "VmHWM")
    client = _opened(live_server, token)
    code = None
    try:
        client.ws.send('{"event_type": "pong", "data": {"x": "' + "x" * (50 * 1024 * 1024) + '"}}')
        while True:
            client.recv()
    except Closed as closed:
        code = closed.code
    except (OSError, websocket.WebSocketException):
        pass  # the server stopped reading and closed while the client was still writing: the kernel resets
    finally:
        client.close()
    assert code in (MESSAGE_TOO_BIG, None)
    grown = _status_kb(worker, "VmHWM") - before
    assert grown < 16 * 1024, f"the worker's peak grew by {grown} KB: it buffered the oversize message"
    fresh = _opened(live_server, token)
    assert _answers_subscribe(fresh, _subscribe_frame(300))
    fresh.close()
    assert _worker_pid(live_server) == worker  # the same worker, not a restarted one


def test_limit_comes_from_ws_max_message_size(monkeypatch: pytest.MonkeyPatch, app_with: Callable[..., Flask]) -> None:
    assert load_config().to_flask()["SOCK_SERVER_OPTIONS"] == {"max_message_size": LIMIT}
    monkeypatch.setenv("WS_MAX_MESSAGE_SIZE", "4096")
    assert load_config().to_flask()["SOCK_SERVER_OPTIONS"] == {"max_message_size": 4096}
    assert app_with(WS_MAX_MESSAGE_SIZE=2048).config["SOCK_SERVER_OPTIONS"] == {"max_message_size": 2048}


@pytest.mark.parametrize("value", ["0", "-1", "64KB"])
def test_ws_max_message_size_must_be_a_positive_integer(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WS_MAX_MESSAGE_SIZE", value)
    with pytest.raises(ConfigError, match="WS_MAX_MESSAGE_SIZE"):
        load_config()
