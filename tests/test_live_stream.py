"""The live stream over real sockets: real gunicorn gevent servers, real PostgreSQL, real websockets."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import jwt
import psycopg2
import pytest
import requests
import websocket
from flask import Flask

from gad.embedded import EmbeddedPostgres, free_port, wait_until_accepting
from gad.extensions import db
from gad.models import Evento, Usuario, utcnow
from tests.builders import Builders
from tests.conftest import ROOT, LiveServer, start_gunicorn, stop_gunicorn
from tests.helpers import wait_until_heard
from tests.wsclient import Closed, WsClient, replay_after

pytestmark = pytest.mark.slow


def _create(server: LiveServer, headers: dict[str, str], codigo: str, **extra: object) -> dict:
    response = server.post("/api/v1/tasks", json={"codigo": codigo, "titulo": "Tarea en vivo", "tipo": "patrullaje", **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _last_event_id(server: LiveServer, token: str) -> int:
    """Where the stream stands now, as a new socket's connection_ack says."""
    probe = WsClient(server.url, token)
    try:
        return int(probe.recv()["data"]["last_event_id"])
    finally:
        probe.close()


def _token(app: Flask, user: Usuario, *, expires_in_s: int) -> str:
    """A correctly signed token with a chosen lifetime (negative: already expired)."""
    now = int(utcnow().timestamp())
    exp = now + expires_in_s
    claims = {"sub": str(user.id), "tv": 1, "jti": f"t{now}{expires_in_s}", "iat": min(now, exp - 1), "exp": exp}
    return jwt.encode(claims, app.config["SECRET_KEY"], algorithm="HS256")


@pytest.fixture(scope="module")
def two_servers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    tmp = tmp_path_factory.mktemp("two")
    a = start_gunicorn(database_url, workers=2, tmp=tmp, extra_env={"WS_QUEUE_SIZE": "5000"})
    b = start_gunicorn(database_url, workers=2, tmp=tmp, extra_env={"WS_QUEUE_SIZE": "5000"})
    yield a, b
    stop_gunicorn(a)
    stop_gunicorn(b)


def test_ack_then_event_envelope(build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    client = WsClient(live_server.url, build.token(sup))
    ack = client.recv()
    assert ack["event_type"] == "connection_ack"
    assert {"connection_id", "last_event_id", "server_time"} <= set(ack["data"])
    tarea = _create(live_server, build.headers(sup), "LIVE-1")
    (frame,) = client.events(1)
    assert set(frame) == {"id", "event_type", "topic", "data", "timestamp"}
    assert frame["event_type"] == "task_created" and frame["topic"] == "tareas" and frame["data"]["id"] == tarea["id"]
    assert frame["id"] == ack["data"]["last_event_id"] + 1
    client.close()


def test_logout_and_demotion_close_open_sockets_with_1008(build: Builders, live_server: LiveServer) -> None:
    admin = build.headers(build.usuario(3))
    supervisor = build.usuario(2)
    token = build.token(supervisor)
    other_token = build.token(supervisor)
    logged_out = WsClient(live_server.url, token)
    still_valid = WsClient(live_server.url, other_token)
    try:
        assert logged_out.recv()["event_type"] == still_valid.recv()["event_type"] == "connection_ack"
        assert live_server.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
        with pytest.raises(Closed) as closed:
            logged_out.events(1, timeout=5)
        assert closed.value.code == 1008
        # Only the logged-out token's socket: the same usuario's other token keeps its stream...
        assert still_valid.quiet(0.5) == []
        # ...until the usuario's role changes: then every socket of theirs must authenticate again.
        demoted = requests.patch(live_server.url + f"/api/v1/users/{supervisor.id}", json={"nivel": 1}, headers=admin, timeout=10)
        assert demoted.status_code == 200
        with pytest.raises(Closed) as closed:
            still_valid.events(1, timeout=5)
        assert closed.value.code == 1008
    finally:
        logged_out.close()
        still_valid.close()


def test_compression_offered_by_browsers_is_declined(build: Builders, live_server: LiveServer) -> None:
    # A per-socket compressor doubled an idle connection's memory; frames must arrive as plain text.
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    client = WsClient(live_server.url, build.token(build.usuario(2)), headers=offer)
    try:
        assert "sec-websocket-extensions" not in {name.lower() for name in client.ws.headers}
        assert client.recv()["event_type"] == "connection_ack"  # websocket-client cannot read a compressed frame
    finally:
        client.close()


@pytest.mark.parametrize("credential", ["none", "garbage", "expired", "revoked", "query_garbage"])
def test_handshake_refuses_bad_credentials(app: Flask, build: Builders, live_server: LiveServer, credential: str) -> None:
    user = build.usuario(3)
    token = {"none": None, "garbage": "not-a-jwt", "query_garbage": "not-a-jwt"}.get(credential)
    if credential == "expired":
        token = _token(app, user, expires_in_s=-60)
    if credential == "revoked":
        token = build.token(user)
        assert live_server.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        WsClient(live_server.url, token, query_token=credential == "query_garbage")
    assert refused.value.status_code == 401
    assert "not-a-jwt" not in live_server.log()  # query strings (tokens) never reach the logs


def test_token_in_query_string_is_accepted(build: Builders, live_server: LiveServer) -> None:
    client = WsClient(live_server.url, build.token(build.usuario(2)), query_token=True)
    assert client.recv()["event_type"] == "connection_ack"
    client.close()


def _browser_cookie(server: LiveServer, email: str) -> str:
    with requests.Session() as session:
        page = session.get(server.url + "/login").text
        csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
        session.post(server.url + "/login", data={"email": email, "password": "correct-horse-battery", "csrf_token": csrf}, allow_redirects=False)
        return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


def test_session_cookie_needs_same_origin(build: Builders, live_server: LiveServer) -> None:
    user = build.usuario(2)
    cookie = _browser_cookie(live_server, user.email)
    same = WsClient(live_server.url, headers={"Cookie": cookie, "Origin": live_server.url})
    assert same.recv()["event_type"] == "connection_ack"
    same.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        WsClient(live_server.url, headers={"Cookie": cookie, "Origin": "https://evil.example"})
    assert refused.value.status_code == 401


def test_change_on_server_a_reaches_client_on_server_b_exactly_once(build: Builders, two_servers: tuple[LiveServer, LiveServer]) -> None:
    a, b = two_servers
    sup = build.usuario(2)
    clients = [WsClient(b.url, build.token(sup)) for _ in range(4)]  # spread over b's two workers
    for client in clients:
        client.recv()
    tarea = _create(a, build.headers(sup), "CROSS-1")
    for client in clients:
        (frame,) = client.events(1)
        assert frame["data"]["id"] == tarea["id"]
        assert client.quiet(0.7) == []  # exactly once
        client.close()


def test_resume_with_since_delivers_exactly_the_missed_events_in_order(build: Builders, two_servers: tuple[LiveServer, LiveServer]) -> None:
    a, b = two_servers
    sup = build.usuario(2)
    headers = build.headers(sup)
    client = WsClient(b.url, build.token(sup))
    client.recv()
    _create(a, headers, "RES-0")
    (seen,) = client.events(1)
    client.close()
    missed = [_create(a, headers, f"RES-{i}")["id"] for i in range(1, 8)]
    resumed = WsClient(b.url, build.token(sup), since=seen["id"])
    assert resumed.recv()["event_type"] == "connection_ack"
    frames = resumed.events(7)
    assert [f["data"]["id"] for f in frames] == missed
    assert [f["id"] for f in frames] == list(range(seen["id"] + 1, seen["id"] + 8))
    live = _create(a, headers, "RES-LIVE")
    (after,) = resumed.events(1)
    assert after["data"]["id"] == live["id"] and after["id"] == frames[-1]["id"] + 1  # no gap, no duplicate at the seam
    resumed.close()


def test_since_beyond_retention_gets_resync_required(build: Builders, live_server: LiveServer) -> None:
    client = WsClient(live_server.url, build.token(build.usuario(2)), since=10_000_000)
    assert client.recv()["event_type"] == "resync_required"
    client.close()


def test_since_equal_to_head_resumes_with_nothing_to_replay(build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    head = _last_event_id(live_server, build.token(sup))
    client = WsClient(live_server.url, build.token(sup), since=head)
    assert client.recv()["event_type"] == "connection_ack"
    assert client.quiet(0.5) == []
    created = _create(live_server, build.headers(sup), "HEAD-1")
    assert client.events(1)[0]["data"]["id"] == created["id"]
    client.close()


def test_a_usuario_who_must_change_the_password_an_administrador_chose_gets_no_socket(build: Builders, live_server: LiveServer) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        WsClient(live_server.url, build.token(build.usuario(2, extra={"debe_cambiar_clave": True})))
    assert refused.value.status_code == 403
    WsClient(live_server.url, build.token(build.usuario(2))).close()


@pytest.mark.parametrize("since", ["abc", "-1", "99999999999999999999"])
def test_malformed_since_is_refused_at_the_handshake(build: Builders, live_server: LiveServer, since: str) -> None:
    url = live_server.url.replace("http://", "ws://") + f"/ws/connect?since={since}"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, header=[f"Authorization: Bearer {build.token(build.usuario(2))}"], suppress_origin=True, timeout=10)
    assert refused.value.status_code == 422


def test_many_writers_every_client_sees_strictly_increasing_gapless_ids(build: Builders, two_servers: tuple[LiveServer, LiveServer]) -> None:
    a, b = two_servers
    admin = build.usuario(3)
    token = build.token(admin)
    clients = [WsClient(server.url, token) for server in (a, b, a, b)]
    start = [c.recv()["data"]["last_event_id"] for c in clients]
    headers = build.headers(admin)

    def writer(w: int) -> None:
        for n in range(50):
            _create(a if (w + n) % 2 else b, headers, f"W{w:02d}-{n:03d}")

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(writer, range(20)))
    for client, first in zip(clients, start, strict=True):
        frames = client.events(1000, timeout=60)
        ids = [f["id"] for f in frames]
        assert ids == list(range(first + 1, first + 1001))
        client.close()


def test_efectivo_receives_only_what_rest_lets_them_read(build: Builders, live_server: LiveServer) -> None:
    sup, user = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=user.id)
    headers = build.headers(sup)
    watcher = WsClient(live_server.url, build.token(user))
    start = watcher.recv()["data"]["last_event_id"]
    hidden = _create(live_server, headers, "HIDDEN-1")
    mine = _create(live_server, headers, "MINE-1")
    assert live_server.post(f"/api/v1/tasks/{mine['id']}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers).status_code == 200
    got = watcher.events(1)
    assert got[0]["event_type"] == "task_assigned" and got[0]["data"]["id"] == mine["id"]  # not task_created: not theirs yet
    user_headers = build.headers(user)
    for frame in got + watcher.quiet(0.5):
        resource = "tasks" if frame["topic"] == "tareas" else "efectivos"
        assert requests.get(f"{live_server.url}/api/v1/{resource}/{frame['data']['id']}", headers=user_headers, timeout=10).status_code == 200
    assert requests.get(f"{live_server.url}/api/v1/tasks/{hidden['id']}", headers=user_headers, timeout=10).status_code == 403
    # Replay applies the same rule: resuming from before HIDDEN-1 shows nothing about it.
    replay = WsClient(live_server.url, build.token(user), since=start)
    assert replay.recv()["event_type"] == "connection_ack"
    replayed = replay.quiet(1.0)
    assert replayed and all(f["data"].get("id") != hidden["id"] or f["topic"] != "tareas" for f in replayed)
    assert all(f["topic"] not in ("usuarios", "seguridad") for f in replayed)
    replay.close()
    watcher.close()


def test_the_officers_of_a_deleted_tarea_are_told_live(build: Builders, live_server: LiveServer) -> None:
    """Their phone page reloads on the frame; without it the tarea stayed on it until a 409 (reviewer's finding)."""
    sup, admin, user = build.usuario(2), build.usuario(3), build.usuario(1)
    efectivo = build.efectivo(usuario_id=user.id)
    headers = build.headers(sup)
    watcher = WsClient(live_server.url, build.token(user))
    watcher.recv()
    tarea = _create(live_server, headers, "OFF-2")
    assert live_server.post(f"/api/v1/tasks/{tarea['id']}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers).status_code == 200
    assert watcher.events(1)[0]["event_type"] == "task_assigned"
    assert requests.delete(f"{live_server.url}/api/v1/tasks/{tarea['id']}", headers=build.headers(admin), timeout=10).status_code == 204
    told = [frame for frame in watcher.quiet(1.0) if frame.get("topic") == "tareas"]
    assert [(frame["event_type"], frame["data"]["id"]) for frame in told] == [("task_deleted", tarea["id"])], told
    watcher.close()


def test_an_officer_taken_off_a_tarea_is_told_live_and_on_resume_and_only_what_they_may_know(build: Builders, live_server: LiveServer) -> None:
    """task_unassigned reaches only those who may read the tarea after the change, which the released officer
    may not: they hear of it through a desasignacion notification to their own sockets (and their ledger)."""
    sup = build.usuario(2)
    released, staying, offline = build.usuario(1), build.usuario(1), build.usuario(1)
    efectivos = {u.id: build.efectivo(usuario_id=u.id) for u in (released, staying, offline)}
    headers = build.headers(sup)
    tarea = _create(live_server, headers, "OFF-3", descripcion="Punto de encuentro reservado", ubicacion_descripcion="Calle Reservada 7")
    everyone = {"efectivo_ids": [e.id for e in efectivos.values()]}
    assert live_server.post(f"/api/v1/tasks/{tarea['id']}/efectivos", json=everyone, headers=headers).status_code == 200
    watchers = {u.id: WsClient(live_server.url, build.token(u)) for u in (released, staying, offline)}
    last_seen = {uid: watcher.recv()["data"]["last_event_id"] for uid, watcher in watchers.items()}  # connection_ack
    watchers[offline.id].close()  # this one's phone has no coverage while it happens
    for u in (released, offline):
        assert live_server.request("DELETE", f"/api/v1/tasks/{tarea['id']}/efectivos/{efectivos[u.id].id}", headers=headers).status_code == 200

    started = time.monotonic()
    told = watchers[released.id].events(1, timeout=10)
    assert told[0]["event_type"] == "notification" and time.monotonic() - started < 5, told
    data = told[0]["data"]
    assert (data["causa"], data["tarea_id"], data["usuario_id"]) == ("desasignacion", tarea["id"], released.id)
    assert (data["requiere_respuesta"], data["escalar_en"]) == (False, None)
    assert tarea["codigo"] in data["titulo"] and tarea["titulo"] in data["texto"]
    # Only what the assignment's notification told them: nothing the tarea says that they may no longer read.
    assert "Reservad" not in json.dumps(told[0]), told[0]
    assert [f for f in watchers[released.id].quiet(1.0) if f["event_type"] == "notification"] == []  # one, not one per release
    # The officer still on the tarea hears of the change (task_unassigned) and gets no notification.
    heard = watchers[staying.id].quiet(1.5)
    assert ("task_unassigned", tarea["id"]) in [(f["event_type"], f["data"].get("id")) for f in heard], heard
    assert [f for f in heard if f["event_type"] == "notification"] == [], heard

    listing = live_server.get("/api/v1/notificaciones?causa=desasignacion", headers=build.headers(released)).json()
    assert [(n["id"], n["tarea_id"], n["estado"]) for n in listing["items"]] == [(data["id"], tarea["id"], "creada")], listing
    assert live_server.get("/api/v1/notificaciones?causa=desasignacion", headers=build.headers(staying)).json()["total"] == 0
    # Telling them widened nothing: the tarea itself stays out of their reach.
    assert live_server.get(f"/api/v1/tasks/{tarea['id']}", headers=build.headers(released)).status_code == 403

    # Back in coverage: resuming after the last event it saw delivers its own desasignacion, and only that.
    replayed = [f for f in replay_after(live_server.url, build.token(offline), since=last_seen[offline.id]) if f["event_type"] == "notification"]
    assert [(f["data"]["causa"], f["data"]["usuario_id"], f["data"]["tarea_id"]) for f in replayed] == [("desasignacion", offline.id, tarea["id"])], replayed
    for watcher in (watchers[released.id], watchers[staying.id]):
        watcher.close()


def test_subscriptions_filter_topics_and_bad_topics_get_an_error_frame(build: Builders, live_server: LiveServer) -> None:
    sup = build.usuario(2)
    client = WsClient(live_server.url, build.token(sup))
    client.recv()
    client.send("subscribe", topics=["usuarios", "nonsense"])
    error = client.recv()
    assert error["event_type"] == "error" and error["data"]["forbidden"] == ["usuarios"] and error["data"]["unknown"] == ["nonsense"]
    assert "usuarios" not in client.recv()["data"]["topics"]  # the connection is kept, subscriptions unchanged
    client.send("unsubscribe", topics=["tareas"])
    assert "tareas" not in client.recv()["data"]["topics"]
    _create(live_server, build.headers(sup), "UNSUB-1")
    assert client.quiet(1.0) == []
    client.send("subscribe", topics=["tareas"])
    client.recv()
    _create(live_server, build.headers(sup), "SUB-2")
    assert client.events(1)[0]["event_type"] == "task_created"
    client.close()


def test_token_expiring_mid_connection_closes_with_1008(app: Flask, build: Builders, live_server: LiveServer) -> None:
    user = build.usuario(2)
    token = _token(app, user, expires_in_s=2)
    client = WsClient(live_server.url, token)
    client.recv()
    with pytest.raises(Closed) as closed:
        client.events(1, timeout=8)
    client.close()
    assert closed.value.code == 1008


def test_frames_the_kernel_only_partly_takes_are_finished_in_order() -> None:
    # The fan-out writes without waiting. Once the peer stops reading, a write is cut short or refused; the
    # rest of that frame and every later frame must follow through the socket's queue, whole and in order.
    from types import SimpleNamespace

    from gad.realtime.connection import Connection, PartialFrame
    from gad.realtime.hub import StoredEvent

    server_side, client_side = _tcp_pair(send_buffer=4096, receive_buffer=4096)  # TCP, as in production
    try:
        server_side.setblocking(False)
        conn = Connection(ws=SimpleNamespace(sock=server_side), usuario=Usuario(id=1, nivel=2), topics={"tareas"}, queue_size=1000)
        conn.live = True

        def event(i: int) -> StoredEvent:
            return StoredEvent(i, "task_created", "tareas", {"codigo": f"P-{i}", "titulo": "x" * 3000}, utcnow())

        first = [conn.deliver(event(i)) for i in range(1, 101)]
        assert first[0] and not first[-1]  # the first went straight out, the last had to wait
        assert any(isinstance(item, PartialFrame) and len(item.data) < len(item.event.wire) for item in list(conn.queue.queue))
        # The client reads a little, so the kernel would take a new write again: it must still wait its turn.
        received = bytearray(client_side.recv(8192))
        assert not any(conn.deliver(event(i)) for i in range(101, 201))

        _write_queue_to_reader(conn, server_side, client_side, received)
    finally:
        server_side.close()
        client_side.close()
    assert [frame["id"] for frame in _text_frames(bytes(received))] == list(range(1, 201))


def test_one_sockets_failure_does_not_silence_the_others() -> None:
    # The fan-out runs in the worker's one listener greenlet: an exception escaping it for one socket used to end
    # that greenlet, and every socket of the worker went quiet. That socket is closed (1013, resume); the rest get the event.
    from types import SimpleNamespace

    from gad.realtime.connection import Connection
    from gad.realtime.hub import Hub, StoredEvent

    class Broken(Connection):
        def wants(self, event: StoredEvent) -> bool:
            raise RuntimeError("a bug in one socket's rule")

    pairs = [_tcp_pair(send_buffer=65536, receive_buffer=65536) for _ in range(2)]
    try:
        hub = Hub()
        broken = Broken(ws=SimpleNamespace(sock=pairs[0][0]), usuario=Usuario(id=1, nivel=2), topics={"tareas"}, queue_size=10)
        healthy = Connection(ws=SimpleNamespace(sock=pairs[1][0]), usuario=Usuario(id=2, nivel=2), topics={"tareas"}, queue_size=10)
        for conn in (broken, healthy):
            conn.live = True
            hub.connections.add(conn)
        for i in (1, 2):
            hub.publish(StoredEvent(i, "task_created", "tareas", {"codigo": f"P-{i}"}, utcnow()))
        assert broken.close_code == 1013 and not broken.queue.qsize()
        pairs[1][0].shutdown(socket.SHUT_WR)
        received = bytearray()
        _read_until_closed(pairs[1][1], received)
        assert [frame["id"] for frame in _text_frames(bytes(received))] == [1, 2]
        assert hub.last_id == 2
    finally:
        for server_side, client_side in pairs:
            server_side.close()
            client_side.close()


def _tcp_pair(send_buffer: int, receive_buffer: int) -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client_side = socket.socket()
        client_side.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        client_side.connect(listener.getsockname())
        server_side, _ = listener.accept()
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    return server_side, client_side


def _read_until_closed(sock: socket.socket, into: bytearray) -> None:
    while chunk := sock.recv(65536):
        into.extend(chunk)


def _write_queue_to_reader(conn: Any, server_side: socket.socket, client_side: socket.socket, received: bytearray) -> None:
    """The socket's greenlet writes everything queued (blocking, as under gevent) while a client reads all of it."""
    from gad.realtime.connection import _send_queued

    reader = threading.Thread(target=lambda: _read_until_closed(client_side, received))
    reader.start()
    server_side.setblocking(True)
    assert _send_queued(conn)
    server_side.shutdown(socket.SHUT_WR)
    reader.join(10)


def _text_frames(data: bytes) -> list[dict]:
    """Decode unmasked server text frames (RFC 6455), failing on anything cut or interleaved."""
    pending = bytearray(data)
    frames = _whole_frames(pending)
    assert not pending, f"{len(pending)} bytes left: a frame cut short"
    return frames


def _update(http: requests.Session, server: LiveServer, headers: dict[str, str], tarea_id: int, etag: str, descripcion: str) -> requests.Response:
    response = http.patch(f"{server.url}/api/v1/tasks/{tarea_id}", json={"descripcion": descripcion}, headers=headers | {"If-Match": etag}, timeout=30)
    assert response.status_code == 200, response.text
    return response


def _pour_big_updates(
    http: requests.Session, server: LiveServer, headers: dict[str, str], tarea_id: int, etag: str, each: Callable[[requests.Response], None] | None = None
) -> str:
    """300 task_updated events of ~10 KB (the descripcion before and after): 3 MB, more than the kernel buffers hold
    for a socket nobody reads, so the server's writer stalls mid-frame. Returns the tarea's last ETag."""
    for i in range(300):
        response = _update(http, server, headers, tarea_id, etag, f"{i:04d}" + "x" * 4990)
        etag = response.headers["ETag"]
        if each is not None:
            each(response)
    return etag


def _read_to_eof(sock: socket.socket, data: bytearray) -> bytes:
    sock.settimeout(60)
    while chunk := sock.recv(65536):
        data.extend(chunk)
    return bytes(data)


def test_slow_client_is_closed_with_1013_and_others_are_unaffected(database_url: str, build: Builders, tmp_path: Path) -> None:
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path, extra_env={"WS_QUEUE_SIZE": "5"})
    slow = healthy = None
    try:
        sup = build.usuario(2)
        headers = build.headers(sup)
        tarea_id = _create(server, headers, "SLOW-0")["id"]
        slow, received = _raw_websocket(server, build.token(sup), receive_buffer=4096)  # never read while events pour in
        healthy = WsClient(server.url, build.token(sup))
        healthy.recv()
        etag = server.get(f"/api/v1/tasks/{tarea_id}", headers=headers).headers["ETag"]

        def keeps_up(response: requests.Response) -> None:  # a reader keeps up, one by one
            # The create's own event may reach it too: acknowledged at the head the worker had heard of, which on a
            # loaded machine can be short of a commit made just before (then delivered live, as it must be).
            updated = healthy.events(1, skip=("ping", "subscriptions", "task_created")) if healthy is not None else []
            assert updated and updated[0]["data"]["version"] == response.json()["version"]

        with requests.Session() as http:
            _pour_big_updates(http, server, headers, tarea_id, etag, each=keeps_up)
        _, (code, _) = _strict_frames(_read_to_eof(slow, bytearray(received)))
        assert code == 1013
    finally:
        if slow is not None:
            slow.close()
        if healthy is not None:
            healthy.close()
        stop_gunicorn(server)


def test_a_replay_longer_than_the_queue_streams_through_it(database_url: str, build: Builders, tmp_path: Path) -> None:
    # The queue bounds what waits for a slow reader, not how far back a client may resume: a replay bigger than
    # WS_QUEUE_SIZE used to close with 1013 before the acknowledgement, at every reconnection.
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path, extra_env={"WS_QUEUE_SIZE": "5"})
    try:
        sup = build.usuario(2)
        headers = build.headers(sup)
        start = _last_event_id(server, build.token(sup))
        created = [_create(server, headers, f"LONG-{i}")["id"] for i in range(12)]
        resumed = WsClient(server.url, build.token(sup), since=start)
        try:
            assert resumed.recv()["event_type"] == "connection_ack"
            assert [f["data"]["id"] for f in resumed.events(12)] == created
            live = _create(server, headers, "LONG-LIVE")
            assert resumed.events(1)[0]["data"]["id"] == live["id"]
        finally:
            resumed.close()
    finally:
        stop_gunicorn(server)


def test_killed_worker_clients_resume_without_loss(build: Builders, database_url: str, tmp_path: Path) -> None:
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path)
    try:
        sup = build.usuario(2)
        headers = build.headers(sup)
        client = WsClient(server.url, build.token(sup))
        client.recv()
        _create(server, headers, "KILL-0")
        (last,) = client.events(1)
        worker_pid = int(subprocess.check_output(["pgrep", "-P", str(server.process.pid)]).split()[0])
        os.kill(worker_pid, signal.SIGKILL)
        with pytest.raises((Closed, websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
            client.events(1, timeout=5)
        client.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                if server.get("/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        made = [_create(server, headers, f"KILL-{i}")["id"] for i in range(1, 4)]
        resumed = WsClient(server.url, build.token(sup), since=last["id"])
        resumed.recv()
        assert [f["data"]["id"] for f in resumed.events(3)] == made
        resumed.close()
    finally:
        stop_gunicorn(server)


def test_listener_recovers_after_postgresql_restart(tmp_path: Path, pg_datadir: Path, build: Builders) -> None:
    pg = EmbeddedPostgres(pg_datadir, port=free_port())
    url = pg.start()
    wait_until_accepting(url)
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    env["GAD_ADMIN_PASSWORD"] = "restart-admin-password"
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "gad", "create-admin", "restart@gad.test"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    server = start_gunicorn(url, workers=1, tmp=tmp_path)
    try:
        token = server.post("/api/v1/auth/login", json={"email": "restart@gad.test", "password": "restart-admin-password"}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        client = WsClient(server.url, token)
        client.recv()
        client.send("unsubscribe", topics=["seguridad"])
        client.recv()
        pg.stop("fast")
        pg.start()
        wait_until_accepting(url)
        deadline = time.monotonic() + 20
        while True:  # the pool recovers by itself (pre-ping); retry until the first write goes through
            response = server.post("/api/v1/tasks", json={"codigo": "AFTER-PG", "titulo": "Tras el reinicio", "tipo": "patrullaje"}, headers=headers)
            if response.status_code == 201:
                break
            assert response.status_code == 503 and time.monotonic() < deadline
            time.sleep(0.3)
        frames = client.events(1, timeout=20)
        assert frames[0]["event_type"] == "task_created" and frames[0]["data"]["codigo"] == "AFTER-PG"
        client.close()
    finally:
        stop_gunicorn(server)
        pg.destroy()


def test_sigterm_closes_websockets_with_1001(build: Builders, database_url: str, tmp_path: Path) -> None:
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path)
    sup = build.usuario(2)
    clients = [WsClient(server.url, build.token(sup)) for _ in range(3)]
    for client in clients:
        client.recv()
    codes: list[int | None] = []
    lock = threading.Lock()

    def wait_close(client: WsClient) -> None:
        try:
            client.events(1, timeout=15)
        except Closed as closed:
            with lock:
                codes.append(closed.code)

    threads = [threading.Thread(target=wait_close, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(20)
    for client in clients:
        client.close()
    assert codes == [1001, 1001, 1001]
    assert server.process.wait(timeout=30) == 0
    assert time.monotonic() - started < 15
    if server.log_file is not None:
        server.log_file.close()


def _raw_websocket(server: LiveServer, token: str, receive_buffer: int, query: str = "") -> tuple[socket.socket, bytes]:
    """A websocket handshake on a plain TCP socket with a small receive buffer; returns it and any bytes past the headers."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: it sets the window
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/connect{query} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


def _strict_frames(data: bytes, pongs: list[bytes] | None = None) -> tuple[list[dict], tuple[int, str]]:
    """Parse a server's whole byte stream as RFC 6455 frames: only whole unmasked text frames (and pong frames,
    collected into ``pongs`` if given), then exactly one close frame, then nothing. Returns the JSON of the
    text frames and the close code and reason."""
    texts: list[dict] = []
    at = 0
    allowed = (0x81, 0x88, 0x8A) if pongs is not None else (0x81, 0x88)
    while True:
        assert at + 2 <= len(data), f"stream ended at byte {at} without a close frame"
        first, second = data[at], data[at + 1]
        assert first in allowed, f"byte {at}: 0x{first:02x} is not the start of a whole frame"
        assert not second & 0x80, f"byte {at}: server frames are never masked"
        length, at = second & 0x7F, at + 2
        if length == 126:
            length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        payload = data[at : at + length]
        assert len(payload) == length, f"frame at byte {at} is cut short ({len(payload)} of {length} bytes)"
        at += length
        if first == 0x81:
            texts.append(json.loads(payload))  # a frame spliced into another is not JSON
            continue
        if first == 0x8A and pongs is not None:
            pongs.append(bytes(payload))
            continue
        assert at == len(data), f"{len(data) - at} bytes follow the close frame"
        return texts, (int.from_bytes(payload[:2], "big"), payload[2:].decode())


@pytest.mark.parametrize("cause", ["slow_client_1013", "revoked_1008", "shutdown_1001"])
def test_close_is_written_after_the_frame_in_progress_and_nothing_follows(cause: str, database_url: str, build: Builders, tmp_path: Path) -> None:
    # A client that stops reading while big events pour in: the server's writer is in the middle of a frame
    # when the close is decided (queue overflow, token logged out, SIGTERM). The close frame must come after
    # that frame, whole, and be the last thing on the wire before EOF.
    queue_size = "20" if cause == "slow_client_1013" else "5000"
    server = start_gunicorn(
        database_url, workers=1, tmp=tmp_path, extra_env={"WS_QUEUE_SIZE": queue_size, "WS_CLOSE_TIMEOUT": "120", "WS_WRITE_TIMEOUT": "120"}
    )
    sock = None
    try:
        sup = build.usuario(2)
        headers = build.headers(sup)
        listener_token = build.token(sup)
        created = server.post("/api/v1/tasks", json={"codigo": "RAW-1", "titulo": "Tarea en vivo", "tipo": "patrullaje"}, headers=headers)
        assert created.status_code == 201, created.text
        tarea_id, etag = created.json()["id"], created.headers["ETag"]
        sock, received = _raw_websocket(server, listener_token, receive_buffer=4096)
        with requests.Session() as http:  # never reading from ``sock`` meanwhile
            _pour_big_updates(http, server, headers, tarea_id, etag)
            if cause == "revoked_1008":
                assert http.post(f"{server.url}/api/v1/auth/logout", headers={"Authorization": f"Bearer {listener_token}"}, timeout=30).status_code == 204
        if cause == "shutdown_1001":
            server.process.send_signal(signal.SIGTERM)
        data = _read_to_eof(sock, bytearray(received))
    finally:
        if sock is not None:
            sock.close()
        stop_gunicorn(server)
    texts, (code, _) = _strict_frames(data)
    assert texts[0]["event_type"] == "connection_ack"
    assert any(frame.get("event_type") == "task_updated" for frame in texts)
    assert code == {"slow_client_1013": 1013, "revoked_1008": 1008, "shutdown_1001": 1001}[cause]


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455: every client frame is masked)."""
    mask = os.urandom(4)
    length = len(payload)
    header = bytes([0x80 | opcode]) + (bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + length.to_bytes(2, "big"))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_a_clients_ping_and_close_are_answered_between_whole_frames(database_url: str, build: Builders, tmp_path: Path) -> None:
    # simple-websocket's reader answers a ping (and echoes a close) the moment it reads it. Written by the reader
    # itself, while the socket's writer was in the middle of a big frame the kernel had not taken, that pong
    # landed inside the frame and every frame after it was garbage (Python's websockets pings every 20 s).
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path, extra_env={"WS_QUEUE_SIZE": "5000", "WS_WRITE_TIMEOUT": "120"})
    sock = None
    try:
        sup = build.usuario(2)
        headers = build.headers(sup)
        tarea_id = _create(server, headers, "PING-1")["id"]
        etag = server.get(f"/api/v1/tasks/{tarea_id}", headers=headers).headers["ETag"]
        sock, received = _raw_websocket(server, build.token(sup), receive_buffer=4096)
        with requests.Session() as http:  # never reading from ``sock`` meanwhile: the writer stalls mid-frame
            etag = _pour_big_updates(http, server, headers, tarea_id, etag)
            sock.sendall(_client_frame(0x9, b"are you there"))
            time.sleep(0.5)  # the reader has read the ping and answered it before the close comes
            sock.sendall(_client_frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
            time.sleep(0.5)
            for i in range(3):  # events after the client's close: none may follow the echo
                etag = _update(http, server, headers, tarea_id, etag, f"after {i}").headers["ETag"]
        pongs: list[bytes] = []
        texts, (code, _) = _strict_frames(_read_to_eof(sock, bytearray(received)), pongs)
    finally:
        if sock is not None:
            sock.close()
        stop_gunicorn(server)
    assert texts[0]["event_type"] == "connection_ack" and any(f.get("event_type") == "task_updated" for f in texts)
    assert pongs == [b"are you there"]
    assert code == 1000  # the close echoed, last, after the frame that was in progress


def test_a_client_that_closes_and_stops_reading_is_let_go_within_the_close_timeout(database_url: str, build: Builders, tmp_path: Path) -> None:
    # The echo of a client's close waits behind a frame the kernel has not taken; a client that sent its close
    # and reads nothing more must not hold the worker's socket, greenlet and hub slot beyond WS_CLOSE_TIMEOUT.
    # (The write timeout is not what this test is about: it must not be the one that lets the client go.)
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path, extra_env={"WS_QUEUE_SIZE": "5000", "WS_CLOSE_TIMEOUT": "2", "WS_WRITE_TIMEOUT": "120"})
    sock = None
    try:
        sup = build.usuario(2)
        headers, admin = build.headers(sup), build.headers(build.usuario(3))
        tarea_id = _create(server, headers, "GONE-1")["id"]
        etag = server.get(f"/api/v1/tasks/{tarea_id}", headers=headers).headers["ETag"]
        sock, _ = _raw_websocket(server, build.token(sup), receive_buffer=4096)
        with requests.Session() as http:
            _pour_big_updates(http, server, headers, tarea_id, etag)
        sock.sendall(_client_frame(0x8, (1000).to_bytes(2, "big")))
        assert server.get("/ws/stats", headers=admin).json()["connections"] == 1
        deadline = time.monotonic() + 15
        while server.get("/ws/stats", headers=admin).json()["connections"] and time.monotonic() < deadline:
            time.sleep(0.25)
        assert server.get("/ws/stats", headers=admin).json()["connections"] == 0
    finally:
        if sock is not None:
            sock.close()
        stop_gunicorn(server)


@contextmanager
def _stall_server(database_url: str, tmp_path: Path, write_timeout: float) -> Iterator[tuple[LiveServer, ExitStack]]:
    """One worker whose writes to a client may make no progress for ``write_timeout`` s, with a queue no test fills
    (no 1013), pings every second, its metrics on the public port and its info lines in the log. What the test puts
    on the stack (its sockets) is closed before the worker stops, whatever happens."""
    env = {"WS_QUEUE_SIZE": "5000", "WS_WRITE_TIMEOUT": str(write_timeout), "WS_PING_INTERVAL": "1", "LOG_LEVEL": "INFO"}
    env |= {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_TOKEN": "scrape-secret"}
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path, extra_env=env)
    try:
        with ExitStack() as opened:
            yield server, opened
    finally:
        stop_gunicorn(server)


def _stall_board(server: LiveServer, build: Builders, codigo: str) -> tuple[Usuario, dict[str, str], dict[str, str], int, str]:
    """A supervisor, their headers, an administrador's headers (for /ws/stats), and a new tarea's id and ETag."""
    sup = build.usuario(2)
    headers, admin = build.headers(sup), build.headers(build.usuario(3))
    tarea_id = _create(server, headers, codigo)["id"]
    return sup, headers, admin, tarea_id, server.get(f"/api/v1/tasks/{tarea_id}", headers=headers).headers["ETag"]


def _dropped_stalled(server: LiveServer) -> float:
    text = requests.get(server.url + "/metrics", headers={"Authorization": "Bearer scrape-secret"}, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith('gad_websockets_dropped_total{reason="write_stalled"}'))


def _connections(server: LiveServer, admin: dict[str, str]) -> int:
    return int(server.get("/ws/stats", headers=admin).json()["connections"])


def _wait_for_connections(server: LiveServer, admin: dict[str, str], count: int, within: float) -> float:
    """Seconds until the worker holds ``count`` sockets (fails after ``within``)."""
    started = time.monotonic()
    while _connections(server, admin) != count:
        assert time.monotonic() - started < within, f"still {_connections(server, admin)} sockets after {within}s"
        time.sleep(0.1)
    return time.monotonic() - started


def _whole_frames(data: bytearray) -> list[dict]:
    """Take the whole unmasked text frames (JSON) off the front of ``data``, leaving a frame cut short in it."""
    frames, at = [], 0
    while at + 2 <= len(data):
        assert data[at] == 0x81, f"byte {at}: 0x{data[at]:02x} is not the start of a whole text frame"
        length, start = data[at + 1] & 0x7F, at + 2
        if length == 126:
            length, start = int.from_bytes(data[start : start + 2], "big"), start + 2
        elif length == 127:
            length, start = int.from_bytes(data[start : start + 8], "big"), start + 8
        if start + length > len(data):
            break
        frames.append(json.loads(data[start : start + length]))
        at = start + length
    del data[:at]
    return frames


def _ended_by_server(sock: socket.socket) -> str:
    """How the server ended a connection it dropped: "reset", or "eof" once whatever it had sent is read."""
    sock.settimeout(30)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return "reset"
    return "eof"


def test_a_client_that_stops_reading_is_dropped_within_the_write_timeout(database_url: str, build: Builders, tmp_path: Path) -> None:
    # A client that stops reading (a phone that lost its radio without a FIN, a malicious one) fills its receive window;
    # the socket's greenlet then waited in that write with no bound until the queue overflowed (hours on a quiet
    # board), its pings could not go out, and the greenlet, the socket and its buffers stayed.
    with _stall_server(database_url, tmp_path, write_timeout=2) as (server, opened):
        sup, headers, admin, tarea_id, etag = _stall_board(server, build, "STALL-1")
        stalled, _ = _raw_websocket(server, build.token(sup), receive_buffer=4096)  # reads nothing from here on
        opened.callback(stalled.close)
        with requests.Session() as http:  # 3 MB: the writer waits long before the last update
            _pour_big_updates(http, server, headers, tarea_id, etag)
        _wait_for_connections(server, admin, 0, within=2 + 3)  # the write timeout and a margin for a loaded machine
        assert _ended_by_server(stalled) == "reset"  # not left to the kernel to trickle out to a zero window
        assert _dropped_stalled(server) == 1
        server.log_file.flush()
        assert server.log_path.read_text().count("took nothing of a write for 2s; dropping the connection") == 1


def test_a_slow_but_steady_reader_is_never_dropped_and_gets_every_event_in_order(database_url: str, build: Builders, tmp_path: Path) -> None:
    # The bound is on a write that makes no progress, not on a frame or a backlog: a phone on a slow link taking a long
    # burst (or a replay) falls far behind for longer than the timeout, and must get all of it. The stalled client
    # beside it shows the bound is armed.
    with _stall_server(database_url, tmp_path, write_timeout=2) as (server, opened):
        sup, headers, admin, tarea_id, etag = _stall_board(server, build, "STALL-2")
        stalled, _ = _raw_websocket(server, build.token(sup), receive_buffer=4096)
        opened.callback(stalled.close)
        slow, received = _raw_websocket(server, build.token(sup), receive_buffer=4096)
        opened.callback(slow.close)
        pending, frames, caught_up = bytearray(received), [], threading.Event()

        def read_slowly() -> None:  # about 130 KB/s, a few KB at a time: slower than the updates pour in
            slow.settimeout(30)
            while not caught_up.is_set() and (chunk := slow.recv(4096)):
                pending.extend(chunk)
                new = _whole_frames(pending)
                frames.extend(new)
                if any(f.get("event_type") == "task_updated" and f["data"]["after"]["descripcion"].startswith("0299") for f in new):
                    caught_up.set()
                time.sleep(0.03)

        reader = threading.Thread(target=read_slowly)
        reader.start()
        with requests.Session() as http:
            _pour_big_updates(http, server, headers, tarea_id, etag)
        poured = time.monotonic()
        _wait_for_connections(server, admin, 1, within=2 + 3)
        reader.join(180)
        behind_for = time.monotonic() - poured
        assert caught_up.is_set(), f"the slow reader got {len(frames)} frames"
        updates = [f for f in frames if f.get("event_type") == "task_updated"]
        assert [f["data"]["after"]["descripcion"][:4] for f in updates] == [f"{i:04d}" for i in range(300)]
        ids = [f["id"] for f in updates]
        assert ids == list(range(ids[0], ids[0] + 300))
        assert behind_for > 2, behind_for  # it stayed behind for longer than the write timeout, and was not dropped for it
        assert _connections(server, admin) == 1 and _dropped_stalled(server) == 1
        slow.settimeout(10)
        while not (after := _whole_frames(pending)):  # from where the reader stopped, perhaps inside a frame
            pending.extend(slow.recv(4096))
        assert after[0]["event_type"] == "ping"


def test_an_idle_client_that_reads_but_never_sends_is_never_dropped(database_url: str, build: Builders, tmp_path: Path) -> None:
    # simple-websocket's reader waits on the same socket as the writer: a bound on waiting for the socket (its
    # timeout) would drop a client that reads fine but has nothing to say. Nothing is written to it but pings; the
    # stalled client beside it shows the bound is armed.
    with _stall_server(database_url, tmp_path, write_timeout=1) as (server, opened):
        sup, headers, admin, tarea_id, etag = _stall_board(server, build, "STALL-3")
        idle = WsClient(server.url, build.token(build.usuario(1)))  # an efectivo: the tarea's updates are not theirs
        opened.callback(idle.close)
        assert idle.recv()["event_type"] == "connection_ack"
        frames: list[dict] = []
        started = time.monotonic()
        stop = threading.Event()

        def read_only() -> None:
            while not stop.is_set():
                frames.append(idle.recv(timeout=5))

        reader = threading.Thread(target=read_only)
        reader.start()
        stalled, _ = _raw_websocket(server, build.token(sup), receive_buffer=4096)
        opened.callback(stalled.close)
        with requests.Session() as http:
            _pour_big_updates(http, server, headers, tarea_id, etag)
        _wait_for_connections(server, admin, 1, within=1 + 3)
        time.sleep(3)  # idle for three times the write timeout after the stalled socket went
        stop.set()
        reader.join(10)
        idle_for = time.monotonic() - started
        assert _connections(server, admin) == 1 and _dropped_stalled(server) == 1
        assert {f["event_type"] for f in frames} == {"ping"}
        assert len(frames) >= idle_for - 3  # one a second, the whole time
        idle.ws.ping(b"still there?")  # and the socket still answers in both directions
        idle.ws.settimeout(5)
        while (answer := idle.ws.recv_data(control_frame=True))[0] != websocket.ABNF.OPCODE_PONG:
            pass
        assert answer[1] == b"still there?"


def test_a_ping_and_a_close_in_one_packet_end_the_stream_with_the_echo(build: Builders, database_url: str, tmp_path: Path) -> None:
    # simple-websocket answers everything one read brought in one write: here a pong and the close's echo. The
    # close must end the stream even when it is not the first frame of that write: a replay under way stops, and
    # nothing follows the echo. Each batch of the replay takes half a second here: at full speed the whole replay could
    # be written before the client's packet arrived (a test process descheduled for 50 ms on a loaded machine).
    env = {"WS_QUEUE_SIZE": "20", "GAD_TEST_REPLAY_BATCH_DELAY_S": "0.5"}
    server = start_gunicorn(database_url, workers=1, app_spec="tests.support.slow_realtime_wsgi:app", tmp=tmp_path, extra_env=env)
    sock = None
    try:
        sup = build.usuario(2)
        since = _last_event_id(server, build.token(sup))
        for i in range(40):  # a replay of four batches (half a queue each)
            _create(server, build.headers(sup), f"BND-{i}")
        sock, received = _raw_websocket(server, build.token(sup), receive_buffer=65536, query=f"?since={since}")
        sock.sendall(_client_frame(0x9, b"p") + _client_frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
        pongs: list[bytes] = []
        texts, (code, reason) = _strict_frames(_read_to_eof(sock, bytearray(received)), pongs)
    finally:
        if sock is not None:
            sock.close()
        stop_gunicorn(server)
    assert (code, reason, pongs) == (1000, "bye", [b"p"])
    assert len([t for t in texts if "id" in t]) < 40  # the replay stopped at the client's close


def test_a_replay_that_fails_in_the_database_closes_with_1011_not_an_http_500(build: Builders, database_url: str, tmp_path: Path) -> None:
    # An exception escaping the socket's handler went to Flask, which wrote an HTTP 500 response onto the upgraded
    # socket, after the frames already sent. The client must get a close it understands (1011) and resume later.
    server = start_gunicorn(database_url, workers=1, app_spec="tests.support.failing_replay_wsgi:app", tmp=tmp_path)
    try:
        sup = build.usuario(2)
        head = WsClient(server.url, build.token(sup))
        since = head.recv()["data"]["last_event_id"]
        head.close()
        resumed = WsClient(server.url, build.token(sup), since=since)
        assert resumed.recv()["event_type"] == "connection_ack"
        with pytest.raises(Closed) as closed:
            resumed.recv()
        resumed.close()
        assert closed.value.code == 1011
        live = WsClient(server.url, build.token(sup))  # the worker goes on serving
        live.recv()
        _create(server, build.headers(sup), "AFTER-1011")
        assert live.events(1)[0]["event_type"] == "task_created"
        live.close()
    finally:
        stop_gunicorn(server)
    assert "HTTP/1.1 500" not in server.log_path.read_text()


def test_a_logout_during_the_handshake_still_closes_the_socket(build: Builders, database_url: str, tmp_path: Path) -> None:
    # The handshake checks the token, then the socket registers with the hub; a logout fanned out in between used
    # to reach no socket, which then lived until the token expired. The worker holds the socket in that window
    # until the logout is made and its hub has fanned it out (a fixed sleep guessed how long the check takes).
    gate = tmp_path / "gate"
    gate.mkdir()
    server = start_gunicorn(
        database_url, workers=1, app_spec="tests.support.slow_realtime_wsgi:app", tmp=tmp_path, extra_env={"GAD_TEST_REGISTER_GATE": str(gate)}
    )
    try:
        sup = build.usuario(2)
        token = build.token(sup)
        admin = build.headers(build.usuario(3))
        opened: list[WsClient] = []
        opener = threading.Thread(target=lambda: opened.append(WsClient(server.url, token)))
        opener.start()
        deadline = time.monotonic() + 20
        while not (gate / "checked").exists():  # the handshake has checked the token; the socket is not registered yet
            assert time.monotonic() < deadline, "the handshake never reached the socket's registration"
            time.sleep(0.02)
        assert server.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
        wait_until_heard(server, admin, _log_head(database_url))  # fanned out to no socket of this usuario
        (gate / "release").touch()
        opener.join(10)
        [client] = opened
        with pytest.raises(Closed) as closed:
            client.events(1, timeout=5, skip=("connection_ack", "ping", "subscriptions"))
        client.close()
        assert closed.value.code == 1008
        other = build.token(sup)  # the usuario's other credentials are unaffected, and the check costs them nothing
        healthy = WsClient(server.url, other)
        assert healthy.recv()["event_type"] == "connection_ack"
        healthy.close()
    finally:
        (gate / "release").touch()
        stop_gunicorn(server)


def _log_head(database_url: str) -> int:
    """The id of the last event committed."""
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT last_id FROM eventos_contador WHERE id = 1")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_a_token_expiring_during_a_long_replay_ends_it_with_1008(app: Flask, build: Builders, database_url: str, tmp_path: Path) -> None:
    # The expiry was checked only by the socket's loop, which a replay (or a write stalled on a client) keeps from
    # running: a replay went on past the token's end. A timer now closes the socket when its credentials end.
    # A token's exp is in whole seconds, so "4 s" lives 3 to 4 s: the first batch comes a second after the handshake
    # and the replay lasts ten, with room on both sides for a loaded machine (with half-second batches and "2 s", a
    # token made late in its second and a connection 0.6 s slow saw nothing replayed before the expiry).
    env = {"GAD_TEST_REPLAY_BATCH_DELAY_S": "1.0", "WS_QUEUE_SIZE": "4"}  # two events a batch, one second each
    server = start_gunicorn(database_url, workers=1, app_spec="tests.support.slow_realtime_wsgi:app", tmp=tmp_path, extra_env=env)
    try:
        sup = build.usuario(2)
        since = _last_event_id(server, build.token(sup))
        for i in range(20):  # ten batches: ten seconds of replay
            _create(server, build.headers(sup), f"EXP-{i}")
        resumed = WsClient(server.url, _token(app, sup, expires_in_s=4), since=since)
        got: list[dict] = []
        with pytest.raises(Closed) as closed:
            while True:
                got.append(resumed.recv(timeout=10))
        resumed.close()
        assert closed.value.code == 1008 and closed.value.reason == "token expired"
        assert got[0]["event_type"] == "connection_ack"
        assert 0 < len([f for f in got if "id" in f]) < 20  # ended with the token, not with the replay
    finally:
        stop_gunicorn(server)


def test_server_json_frames_go_out_whole_when_the_kernel_takes_them_in_pieces() -> None:
    # The acknowledgement, pings, errors and subscriptions went through simple-websocket's send(), which makes one
    # socket send() and ignores how much the kernel took: behind a burst, such a frame could be cut short.
    from types import SimpleNamespace

    from gad.realtime.connection import Connection, send_json
    from gad.realtime.hub import StoredEvent

    server_side, client_side = _tcp_pair(send_buffer=4096, receive_buffer=4096)
    received = bytearray()
    try:
        # No send() on this ws: every frame must be written by the connection itself, whole.
        conn = Connection(ws=SimpleNamespace(sock=server_side), usuario=Usuario(id=1, nivel=2), topics={"tareas"}, queue_size=1000)
        for i in range(1, 101):
            conn.offer(StoredEvent(i, "task_created", "tareas", {"codigo": f"P-{i}", "titulo": "x" * 3000}, utcnow()))
            send_json(conn, "error", {"message": "m" * 3000, "n": i})
        _write_queue_to_reader(conn, server_side, client_side, received)
    finally:
        server_side.close()
        client_side.close()
    frames = _text_frames(bytes(received))
    assert [(f.get("id"), f["event_type"]) for f in frames] == [x for i in range(1, 101) for x in ((i, "task_created"), (None, "error"))]
    assert [f["data"]["n"] for f in frames if f["event_type"] == "error"] == list(range(1, 101))


def test_a_write_is_bounded_by_no_progress_not_by_a_big_send_buffer_draining_slowly() -> None:
    # The kernel wakes a waiting writer only once about a third of the send buffer is free, and on a TCP socket that
    # buffer grows to megabytes: a reader taking some 130 KB/s frees that much only every few seconds, and a bound
    # on waiting for the socket to be writable dropped it after one timeout. What the client acknowledges is progress
    # too; a client that stops reading is dropped one timeout after its buffers are full.
    from types import SimpleNamespace

    import gevent.socket

    from gad.realtime.connection import Connection, _write

    def pair() -> tuple[Any, socket.socket]:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client_side = socket.socket()
            client_side.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client_side.connect(listener.getsockname())
            server_side, _ = listener.accept()
        return gevent.socket.socket(fileno=server_side.detach()), client_side

    (steady_server, steady_client), (stalled_server, stalled_client) = pair(), pair()
    stop, received = threading.Event(), [0]

    def read_steadily() -> None:
        while not stop.is_set() and (chunk := steady_client.recv(4096)):
            received[0] += len(chunk)
            time.sleep(0.03)

    reader = threading.Thread(target=read_steadily)
    reader.start()
    try:
        steady, stalled = (
            Connection(ws=SimpleNamespace(sock=sock), usuario=Usuario(id=1, nivel=2), topics={"tareas"}, queue_size=10, write_timeout=1.0)
            for sock in (steady_server, stalled_server)
        )
        frame, longest = b"x" * 10_000, 0.0
        started = time.monotonic()
        while time.monotonic() - started < 5:
            began = time.monotonic()
            _write(steady, frame)
            longest = max(longest, time.monotonic() - began)
        assert not steady.closed and longest > 1.0  # one write waited longer than the timeout, progressing all along
        started = time.monotonic()
        with pytest.raises(OSError):
            while True:
                _write(stalled, frame)
        assert stalled.closed and 1.0 <= time.monotonic() - started < 3.0
        assert _ended_by_server(stalled_client) == "reset"
    finally:
        stop.set()
        steady_server.close()
        reader.join(10)
        for sock in (steady_client, stalled_server, stalled_client):
            sock.close()


def test_resuming_while_writes_continue_loses_nothing_at_the_seam(build: Builders, two_servers: tuple[LiveServer, LiveServer]) -> None:
    # A socket resuming with ?since= reads the log while its server's hub keeps hearing new commits. A live event
    # heard meanwhile must wait for the acknowledgement and the replay: sent first, it would come before the
    # connection_ack and make every older replayed event look like a duplicate, silently lost to the client.
    a, b = two_servers
    sup = build.usuario(2)
    headers, token = build.headers(sup), build.token(sup)
    watcher = WsClient(b.url, token)
    head = watcher.recv()["data"]["last_event_id"]
    watcher.close()
    stop = threading.Event()

    def write(writer: int) -> None:
        i = 0
        while not stop.is_set():
            _create(a, headers, f"SEAM-{writer}-{i}")
            i += 1

    writers = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(15):
            time.sleep(0.05)
            resumed = WsClient(b.url, token, since=head)
            try:
                ack = resumed.recv()
                assert ack["event_type"] == "connection_ack"
                frames = resumed.events(30, timeout=20)
            finally:
                resumed.close()
            ids = [f["id"] for f in frames]
            with build.app.app_context():
                written = db.session.scalars(
                    db.select(Evento.id).where(Evento.topic == "tareas", Evento.id > head, Evento.id <= ids[-1]).order_by(Evento.id)
                ).all()
            assert ids == written, f"resumed after {head}: got {ids}, the log has {written}"
            head = ids[-1]
    finally:
        stop.set()
        for writer in writers:
            writer.join(30)


@pytest.mark.parametrize("ids", [["ID"], [True], ["ID", "ID"], [2**31]])
def test_a_delivery_report_with_ids_that_are_not_json_integers_is_refused_and_records_nothing(build: Builders, live_server: LiveServer, ids: list[Any]) -> None:
    officer, supervisor = build.usuario(1), build.usuario(2)
    client = WsClient(live_server.url, build.token(officer))
    try:
        assert client.recv()["event_type"] == "connection_ack"
        alerta = {"tipo": "aviso", "texto": "Prueba de entrega", "destino": "usuarios", "usuario_ids": [officer.id]}
        assert live_server.post("/api/v1/alertas", json=alerta, headers=build.headers(supervisor)).status_code == 201
        frame = client.recv()
        while frame.get("event_type") != "notification":
            frame = client.recv()
        notification_id = frame["data"]["id"]
        sent = [str(notification_id) if item == "ID" else item for item in ids]
        client.send("notification_received", ids=sent)
        reply = client.recv()
        while reply.get("event_type") != "error":
            reply = client.recv()
        assert "notification_received" in reply["data"]["message"]
        listed = f"/api/v1/notificaciones?alerta_id={frame['data']['alerta_id']}"
        assert [item["entregada_en"] for item in live_server.get(listed, headers=build.headers(officer)).json()["items"]] == [None]
        client.send("notification_received", ids=[notification_id])  # the same report, as the page sends it
        deadline = time.monotonic() + 10
        while live_server.get(listed, headers=build.headers(officer)).json()["items"][0]["entregada_en"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        client.close()
