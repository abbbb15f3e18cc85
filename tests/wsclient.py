"""A small synchronous websocket client for tests (websocket-client), reporting close codes."""

from __future__ import annotations

import json
import struct
import time
from typing import Any

import websocket


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class WsClient:
    def __init__(
        self, base_url: str, token: str | None = None, *, since: int | None = None, query_token: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        url = base_url.replace("http://", "ws://") + "/ws/connect"
        params = []
        if since is not None:
            params.append(f"since={since}")
        if token and query_token:
            params.append(f"token={token}")
        if params:
            url += "?" + "&".join(params)
        extra = dict(headers or {})
        origin = extra.pop("Origin", None)  # websocket-client sends its own Origin unless told which one
        header = [f"{k}: {v}" for k, v in extra.items()]
        if token and not query_token:
            header.append(f"Authorization: Bearer {token}")
        options = {"origin": origin} if origin else {"suppress_origin": True}
        self.ws = websocket.create_connection(url, header=header, timeout=10, enable_multithread=True, **options)

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        self.ws.settimeout(timeout)
        while True:
            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                raise Closed(code, data[2:].decode(errors="replace"))
            if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                continue
            return json.loads(data)

    def events(self, count: int, timeout: float = 15, skip: tuple[str, ...] = ("ping", "subscriptions")) -> list[dict[str, Any]]:
        """The next ``count`` event frames (frames with an id), skipping control frames."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {len(out)} of {count} events: {out[-3:]}")
            frame = self.recv(timeout=remaining)
            if frame.get("event_type") in skip:
                continue
            out.append(frame)
        return out

    def quiet(self, seconds: float = 1.0) -> list[dict[str, Any]]:
        """Frames with an id that arrive within ``seconds`` (expected to be none, usually)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = self.recv(timeout=remaining)
            except websocket.WebSocketTimeoutException:
                break
            if "id" in frame:
                got.append(frame)
        return got

    def send(self, event_type: str, **data: Any) -> None:
        self.ws.send(json.dumps({"event_type": event_type, "data": data}))

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass
        finally:
            self.ws.shutdown()


def replay_after(base_url: str, token: str, since: int, seconds: float = 3.0) -> list[dict[str, Any]]:
    """The frames a new socket resuming after event ``since`` receives within ``seconds`` of its connection_ack."""
    client = WsClient(base_url, token, since=since)
    try:
        assert client.recv()["event_type"] == "connection_ack"
        return client.quiet(seconds)
    finally:
        client.close()
