"""One websocket connection's whole life: handshake result -> replay -> bounded queue -> writes -> close.

The socket has exactly one greenlet (``serve``) that reads client frames and writes; the hub's fan-out
may write a live event straight to the socket only when nothing is queued or being written, and
otherwise queues it here. Client frames: ``subscribe`` / ``unsubscribe`` (topics checked by
``gad.policy.decide_subscription``), ``pong``, and those a blueprint registers a handler for with
``register_client_frame`` (``notification_received``: this layer runs no business rule itself).

Closing (1013 slow client, 1008 credentials revoked or expired, 1001 shutdown) is decided by anyone —
the fan-out, the hub, this greenlet — but written only by this greenlet: after the rest of a frame
already begun, then the close frame, then EOF, and nothing else. A close frame written from another
greenlet would land in the middle of a half-sent frame. A client that does not read even that within
``WS_CLOSE_TIMEOUT`` seconds has its TCP connection dropped, and so has one whose write the kernel lets make no progress
for ``WS_WRITE_TIMEOUT`` seconds, close decided or not (a client that stopped reading: the greenlet would wait in that
write until its queue overflowed, and its pings could not go out meanwhile). simple-websocket's reader greenlet also writes:
a pong to a client's ping, the echo of a client's close, and 1009 the moment a client message passes
``WS_MAX_MESSAGE_SIZE`` (config.py's ``SOCK_SERVER_OPTIONS``, so no message is ever held beyond the limit).
It writes to a ``ReaderSocket``, which hands those bytes to this greenlet's queue: written by the reader
itself they would land inside a frame half sent.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import struct
import termios
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import gevent
from gevent.queue import Empty, Full, Queue
from pydantic import ValidationError
from wsproto.events import CloseConnection
from wsproto.utilities import LocalProtocolError

from gad import metrics, policy
from gad.extensions import db
from gad.models import Usuario, utcnow
from gad.realtime.hub import BATCH, CLOSE_POLICY, CLOSE_TRY_AGAIN, StoredEvent, can_resume, encode_text_frame, events_after, hub
from gad.schemas.ws import EVENT_TYPE_TOPICS, ClientFrame, Topics, WsConnectQuery

logger = logging.getLogger(__name__)


class PartialFrame(NamedTuple):
    """The rest of an event frame the kernel did not take at once; the socket's greenlet finishes it."""

    data: bytes
    event: StoredEvent


class ReaderFrame(NamedTuple):
    """A pong simple-websocket's reader greenlet answered to a client's ping, sent between whole frames."""

    data: bytes


CLOSE_SERVER_ERROR = 1011
# SO_LINGER on with a zero delay: close() resets the connection and frees at once what the peer never took, instead
# of leaving the kernel an orphan socket that probes a zero window with those bytes for minutes.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
_SIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None)  # on a TCP socket, Linux answers its unacknowledged bytes


def _close_code_in(frames: bytes) -> int | None:
    """The close code if these whole unmasked server control frames (payloads under 126 bytes) hold a close."""
    at = 0
    while at + 2 <= len(frames):
        opcode, length = frames[at] & 0x0F, frames[at + 1] & 0x7F
        if opcode == 0x8:
            return int.from_bytes(frames[at + 2 : at + 4], "big") if length >= 2 else 1005
        at += 2 + length
    return None


class ReaderSocket:
    """The socket as simple-websocket's reader greenlet sees it once the connection is served: it reads from the
    real socket, and what it writes goes through the connection's queue, in order with everything else."""

    __slots__ = ("_conn", "_sock")  # one per open socket, and 10,000 of them idle on a worker

    def __init__(self, sock: socket.socket, conn: Connection) -> None:
        self._sock = sock
        self._conn = conn

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def send(self, data: bytes) -> int:
        # One call carries everything the reader answered to one read: pongs, and perhaps (always last: wsproto
        # sends nothing after it) the echo of the client's close or a 1009. With a close, the whole of it ends the stream.
        code = _close_code_in(bytes(data))
        if code is None:
            self._conn.offer(ReaderFrame(bytes(data)))
        else:
            self._conn.end_with(bytes(data), code)
        return len(data)

    def close(self) -> None:
        """The reader ends (client closed, 1009, dead peer): the socket's greenlet finishes; the server closes the
        TCP connection when the handler returns."""
        self._conn.wake.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class SessionLink(NamedTuple):
    """A socket opened with a browser session: it ends with the session's lifetime, and while open it
    counts as use of the session (``keep_alive`` every ``every_s``), so a watched dashboard does not idle out."""

    id: int
    expires_at: float  # the session's absolute end (epoch seconds)
    keep_alive: Callable[[], None]
    every_s: float


ReplayFilter = Callable[[list[StoredEvent]], list[StoredEvent]]


class Connection:
    """One websocket client: who it is, what it listens to, and its bounded outgoing queue.

    ``wake`` is set whenever the socket's greenlet has something to do: a frame queued here, or (it is
    simple-websocket's own event) a client frame received or the socket closed. One greenlet per socket
    then both sends and reads, instead of a separate sender: at 10,000 idle sockets every greenlet costs
    its own Python frame stack. A plain class, not a dataclass: that execs its generated methods at every
    worker's import (docs/ARCHITECTURE.md §5 "Start-up"); compared by identity.
    """

    def __init__(
        self,
        ws: Any,
        usuario: Usuario,
        topics: set[str],
        queue_size: int,
        jti: str | None = None,
        session_id: int | None = None,
        wake: gevent.event.Event | None = None,
        close_timeout: float = 10.0,
        write_timeout: float = 60.0,
    ) -> None:
        self.ws = ws
        self.sock: socket.socket = ws.sock  # the real socket: every write of this greenlet and the fan-out goes here
        self.usuario = usuario
        self.topics = topics
        self.queue_size = queue_size
        self.jti = jti  # the token the socket was opened with (None: the dashboard's session cookie)
        self.session_id = session_id  # the browser session it was opened with (None: a bearer token)
        self.wake = gevent.event.Event() if wake is None else wake
        self.id = uuid.uuid4().hex
        self.close_timeout = close_timeout  # seconds the writer gets to finish its frame and write the close frame
        self.write_timeout = write_timeout  # seconds a write of this greenlet may make no progress (see _write)
        self.last_sent = 0
        self.closed = False  # nothing more is written: closed, or the peer is gone
        self.close_code: int | None = None  # set once a close is decided; the writer then sends it and ends
        self.close_reason = ""
        # The close frame simple-websocket's reader already encoded (its echo of the client's close, or 1009): once
        # its state machine has closed the connection, this is the close the writer sends, whatever was decided.
        self.final_frame: bytes | None = None
        self.live = False  # replay done: from here on, events may be written straight from the fan-out
        # While a resuming socket is acknowledged and reads the log, the live events its hub hears wait here, not
        # in the queue: queued, they would go out before the acknowledgement and before the older events being
        # replayed, which the seam's duplicate check would then drop. None: nothing is being replayed.
        self.held: list[StoredEvent] | None = None
        self.replayed_through = 0  # events up to here were the replay's to send (or withhold): live copies are dropped
        self.writing = False  # the socket's greenlet is in the middle of a write
        self.queue: Queue = Queue(maxsize=queue_size)
        self._abort_timer: gevent.Greenlet | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} usuario={self.usuario.id} topics={sorted(self.topics)}>"

    @property
    def ending(self) -> bool:
        """No new frame may start: a close was decided, or the connection is over."""
        return self.closed or self.close_code is not None

    def wants(self, event: StoredEvent) -> bool:
        return event.topic in self.topics and policy.can_see_event(self.usuario, event.topic, event.payload)

    def offer(self, item: Any) -> bool:
        """Queue without blocking; a full queue means the client fell behind and must resume later."""
        if self.ending:
            return False
        try:
            self.queue.put_nowait(item)
        except Full:
            self.close(CLOSE_TRY_AGAIN, "client too slow; reconnect with ?since=<last id>")
            return False
        self.wake.set()
        return True

    def deliver(self, event: StoredEvent) -> bool:
        """Fan-out: write a live event at once when nothing is ahead of it, else queue it; True if written.

        Waking 1,000 greenlets to each write one frame cost more than the writes themselves. The write
        never waits: what the kernel does not take at once is queued, in order, for the socket's greenlet.
        """
        if self.ending or event.id <= self.replayed_through:
            return False
        if self.held is not None:
            if len(self.held) >= self.queue_size:
                self.close(CLOSE_TRY_AGAIN, "client too slow; reconnect with ?since=<last id>")
            else:
                self.held.append(event)
            return False
        if not self.live or self.writing or not self.queue.empty():
            self.offer(event)
            return False
        if event.id <= self.last_sent:
            return False
        wire = event.wire
        try:
            # gevent keeps every socket's descriptor non-blocking: a plain write() takes what the kernel
            # accepts now or raises BlockingIOError, and never waits.
            sent = os.write(self.sock.fileno(), wire)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.closed = True
            self.wake.set()
            return False
        self.last_sent = event.id
        if sent < len(wire):
            self.offer(PartialFrame(wire[sent:], event))
            return False
        return True

    def close(self, code: int, reason: str) -> None:
        """Decide to close with ``code`` (from any greenlet); the socket's own greenlet writes it (see module doc).

        A timer bounds how long that may take: a client that reads nothing cannot hold the greenlet forever.
        """
        if self.ending:
            return
        self.close_code, self.close_reason = code, reason
        self._abort_timer = gevent.spawn_later(self.close_timeout, self._abort)
        self.wake.set()

    def end_with(self, frames: bytes, code: int) -> None:
        """The reader answered a close (or refused an oversize message): nothing new may start, the writer sends the
        rest of a frame already begun and then ``frames`` (ending with that close), within the close timeout."""
        self.final_frame = frames
        self.close(code, "")  # a no-op when a close was already decided: its writer sends ``frames`` instead
        self.wake.set()

    def _abort(self) -> None:
        """The close could not be written in time: drop the TCP connection (the writer's pending write fails)."""
        self.drop("close_timeout", f"did not take its close frame within {self.close_timeout:g}s")

    def drop(self, reason: str, why: str) -> None:
        """End the connection without a close frame: reset the TCP connection (a write waiting on it fails, and so
        does simple-websocket's read). The client resumes with ``since``. Logged and counted once."""
        if self.closed:
            return
        logger.info("websocket %s %s; dropping the connection", self.id, why)
        metrics.WEBSOCKETS_DROPPED.labels(reason).inc()
        self.closed = True
        self.wake.set()
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            self.sock.close()
        except OSError:
            pass


ClientFrameHandler = Callable[["Connection", Any], None]
_client_handlers: dict[str, ClientFrameHandler] = {}


def register_client_frame(event_type: str, handler: ClientFrameHandler) -> None:
    """Let the edge handle a client frame type (the handler gets the connection and the frame's ``data``)."""
    _client_handlers[event_type] = handler


def serve(
    ws: Any,
    usuario: Usuario,
    query: WsConnectQuery,
    claims: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    *,
    session: SessionLink | None = None,
    replay_filter: ReplayFilter | None = None,
    credentials_hold: Callable[[], bool] | None = None,
) -> None:
    """Run an authenticated socket until it ends: register, acknowledge or ask to resync, replay, then live.

    ``replay_filter`` keeps the replayed events the usuario may read *now* (see gad.policy).
    ``credentials_hold`` looks again at the credentials once the socket is registered (see gad.blueprints.ws).
    """
    # simple-websocket's reader sets ws.event when a client frame arrives or the peer closes: sharing it
    # as the connection's wake-up lets one greenlet serve the socket in both directions.
    conn = Connection(
        ws=ws,
        usuario=usuario,
        topics=policy.visible_topics(usuario),
        queue_size=config["WS_QUEUE_SIZE"],
        jti=str(claims["jti"]) if claims else None,
        session_id=session.id if session else None,
        wake=ws.event,
        close_timeout=config["WS_CLOSE_TIMEOUT"],
        write_timeout=config["WS_WRITE_TIMEOUT"],
    )
    # Detach the usuario from the request's session: the socket outlives it.
    db.session.expunge(usuario)
    hub.ensure_started(config["SQLALCHEMY_DATABASE_URI"])
    if query.since is not None:
        conn.held = []  # the checks and the replay below wait on the database: the hub keeps fanning out meanwhile
    ws.sock = ReaderSocket(conn.sock, conn)
    expires_at = float(claims["exp"]) if claims else session.expires_at if session else None
    # A timer, not a check in the socket's loop: a long replay or a write stalled on a client that stopped reading
    # keeps the loop from running, and the socket must not outlive its credentials meanwhile.
    expiry = _close_at(conn, expires_at, "token expired" if session is None else "session expired")
    hub.register(conn)  # from here on live events queue up (or are held), so nothing falls between replay and live
    try:
        # A logout or role change the hub fanned out between the handshake's check and this registration reached
        # no socket of this usuario: look again now that nothing more can be missed.
        if credentials_hold is not None and not credentials_hold():
            conn.close(CLOSE_POLICY, "credentials revoked or changed; authenticate again")
        if query.since is not None and not can_resume(query.since, config["EVENT_RETENTION_DAYS"]):
            conn.held = None
            conn.last_sent = hub.last_id
            send_json(conn, "resync_required", {"since": query.since, "last_event_id": hub.last_id})
        else:
            send_json(conn, "connection_ack", {"connection_id": conn.id, "last_event_id": hub.last_id, "server_time": utcnow().isoformat()})
            if query.since is not None:
                _replay(conn, query.since, replay_filter)
            else:
                conn.last_sent = hub.last_id
        db.session.remove()  # give the pooled connection back: a socket may stay open for hours
        conn.live = True
        _run(conn, config["WS_PING_INTERVAL"], session)
        if conn.close_code is not None:
            _write_close(conn)
    except Exception:
        # Raised on, Flask would answer an HTTP 500 onto the upgraded socket (after frames already sent, perhaps in
        # the middle of one): the client gets 1011 after whole frames and resumes with since, like any other close.
        logger.exception("websocket %s failed", conn.id)
        conn.close(CLOSE_SERVER_ERROR, "server error; reconnect with ?since=<last id>")
        _write_close(conn)
    finally:
        conn.closed = True
        if conn._abort_timer is not None:
            conn._abort_timer.kill(block=False)
        if expiry is not None:
            expiry.close()
        hub.unregister(conn)
        ws.sock = conn.sock  # nothing of ours writes any more: flask-sock's own close may go straight out


def _close_at(conn: Connection, at: float | None, reason: str) -> Any:
    """Close ``conn`` with 1008 at epoch second ``at``: a libev timer on the worker's loop (no greenlet of its own:
    10,000 idle sockets would each carry one). None when the credentials do not expire."""
    if at is None:
        return None
    timer = gevent.get_hub().loop.timer(max(at - time.time(), 0.0))
    timer.start(conn.close, CLOSE_POLICY, reason)
    return timer


def send_json(conn: Connection, event_type: str, data: dict[str, Any]) -> None:
    conn.offer(json.dumps({"event_type": event_type, "data": data, "timestamp": utcnow().isoformat()}))


def _replay(conn: Connection, since: int, replay_filter: ReplayFilter | None) -> None:
    """Queue visible events with id > since from the log, then the live events held meanwhile that the log
    read did not reach. Live copies of what the log read covered, heard later (the hub may lag behind the log),
    are dropped: the replay's rule decided those."""
    cursor = since
    limit = max(1, min(BATCH, conn.queue_size // 2))  # half the queue at most: room for pongs while a batch waits
    while True:
        # What is queued (the acknowledgement, the last batch) is written before the next batch is read, without a
        # pooled connection held meanwhile: a replay longer than the queue streams through it instead of closing
        # with 1013 at every attempt, and a client slow to read holds no database connection.
        db.session.remove()
        if not _send_queued(conn):
            return
        batch = events_after(cursor, limit)
        if batch:
            cursor = batch[-1].id
        for event in replay_filter(batch) if replay_filter and batch else batch:
            if conn.wants(event):
                conn.offer(event)
        if len(batch) < limit:
            break
    # The last batch written too: the held events (at most a queue's worth) then fit behind whatever follows.
    db.session.remove()
    if not _send_queued(conn):
        return
    # Until here every live event was held (the reads above wait on the database); from here on each one queues
    # behind the replayed ones, in id order, or is dropped as a copy of what the reads covered.
    held, conn.held = conn.held or [], None
    conn.replayed_through = cursor
    for event in held:
        if event.id > cursor:
            conn.offer(event)


def _send_queued(conn: Connection) -> bool:
    """Write every queued frame, in order; False once the connection is to end (close decided, dead peer).

    Once a close is decided only the rest of a frame already begun (a PartialFrame, always at the head of
    the queue) and the reader's pongs are written; everything else is dropped: the client resumes with ``since``.
    """
    while True:
        try:
            item = conn.queue.get_nowait()
        except Empty:
            return not conn.ending
        if conn.close_code is not None and not isinstance(item, (PartialFrame, ReaderFrame)):
            continue  # a pong the reader answered before the close still goes: a control frame, not news
        conn.writing = True  # the fan-out must not write between the pieces of this frame
        try:
            if isinstance(item, StoredEvent):
                if item.id <= conn.last_sent:  # already sent by the replay (seam between replay and live)
                    continue
                _write(conn, item.wire)  # encoded once for every socket it goes to
                conn.last_sent = item.id
                hub.record_delivery(item)
            elif isinstance(item, PartialFrame):
                _write(conn, item.data)
                hub.record_delivery(item.event)
            elif isinstance(item, ReaderFrame):
                _write(conn, item.data)
            else:
                # Encoded here and written whole: simple-websocket's send() makes one send() call and ignores
                # how much of the frame the kernel took.
                _write(conn, encode_text_frame(item))
        except Exception:  # noqa: BLE001 - a dead peer ends the connection
            conn.closed = True
            return False
        finally:
            conn.writing = False


def _write(conn: Connection, data: bytes) -> None:
    """Write all of ``data`` from the socket's greenlet. A client that lets the write make no progress for
    ``write_timeout`` seconds is dropped, and this raises OSError, as for any dead peer.

    Nearly always the kernel takes the whole frame at once: one write() and no timer, less than gevent's sendall.
    Only a write that has to wait arms a timer, once, restarted whenever the kernel takes more or the client
    acknowledges more: the bound is on no progress, so a slow but steady reader is never dropped, whatever the
    frame's size or the replay's length. Not the socket's own timeout: simple-websocket's reader waits on the same
    socket, and an idle client that reads fine but sends nothing would time that out.
    """
    try:
        # gevent keeps the descriptor non-blocking: this never waits (see Connection.deliver).
        sent = os.write(conn.sock.fileno(), data)
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return
    rest = memoryview(data)[sent:]
    stalled = gevent.Timeout(conn.write_timeout)
    try:
        while rest:
            if not stalled.pending:
                unacked = _unacked(conn.sock)
                stalled.start()
            try:
                # gevent's send(): one attempt, and if the kernel refuses, one wait until the socket is writable and
                # another attempt (0 bytes if that too is refused). A wait woken by a drop's close raises OSError.
                sent = conn.sock.send(rest)
            except gevent.Timeout as timeout:
                if timeout is not stalled:
                    raise
                # The kernel wakes a writer only once about a third of the send buffer is free: a big buffer drained
                # by a slow but steady reader may take longer than that. What the client acknowledged is progress too.
                now = _unacked(conn.sock)
                if now is None or unacked is None or now >= unacked:
                    conn.drop("write_stalled", f"took nothing of a write for {conn.write_timeout:g}s")
                    raise ConnectionAbortedError(f"websocket {conn.id} dropped: no progress") from None
                continue
            if sent:
                stalled.cancel()
                rest = rest[sent:]
    finally:
        stalled.close()


def _unacked(sock: socket.socket) -> int | None:
    """Bytes written to ``sock`` that its peer has not acknowledged yet (Linux's SIOCOUTQ); None where unknown."""
    if _SIOCOUTQ is None:
        return None
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0"))[0])
    except OSError:
        return None


def _write_close(conn: Connection) -> None:
    """The last bytes on the wire: one close frame, then EOF. Only the socket's own greenlet calls this."""
    ws, code = conn.ws, conn.close_code
    try:
        if not conn.closed:
            _send_queued(conn)  # the rest of a frame already begun, if any
        if not conn.closed and code is not None:
            # Ours goes through wsproto's state machine, so simple-websocket's reader answers nothing after it (a
            # pong or an echoed close would follow our close frame); the reader's own close is already encoded.
            frame = conn.final_frame if conn.final_frame is not None else _our_close_frame(ws, code, conn.close_reason)
            _write(conn, frame)
            conn.sock.shutdown(socket.SHUT_WR)
    except Exception:
        logger.debug("closing websocket %s failed", conn.id, exc_info=True)
    finally:
        conn.closed = True
        ws.connected = False  # flask-sock's own close() after the handler must write nothing


def _our_close_frame(ws: Any, code: int, reason: str) -> bytes:
    try:
        return bytes(ws.ws.send(CloseConnection(code, reason)))
    except LocalProtocolError:
        return b""  # the reader's state machine has already closed: EOF is all that is left to send


def _run(conn: Connection, ping_interval: float, session: SessionLink | None = None) -> None:
    """The socket's only greenlet: sleeps until woken (frame queued, client frame, close — the credentials' expiry
    among them) or the next ping; frames leave in queue order, one writer at a time."""
    ws = conn.ws
    next_ping = time.monotonic() + ping_interval
    next_keep_alive = time.monotonic() + (session.every_s if session else 0)
    while not conn.ending and ws.connected:
        conn.wake.wait(timeout=max(next_ping - time.monotonic(), 0))
        conn.wake.clear()
        # Look before calling receive(): on an empty buffer even receive(timeout=0) yields to the hub, and a
        # fan-out to 1,000 sockets would pay 1,000 extra hub cycles.
        while ws.input_buffer and not conn.ending:
            _handle_client_frame(conn, ws.receive(timeout=0))
        if not _send_queued(conn):
            return
        if time.monotonic() >= next_ping:
            send_json(conn, "ping", {})
            next_ping = time.monotonic() + ping_interval
            if session is not None and time.monotonic() >= next_keep_alive:
                session.keep_alive()
                next_keep_alive = time.monotonic() + session.every_s


def _handle_client_frame(conn: Connection, raw: str | bytes) -> None:
    try:
        frame = ClientFrame.model_validate_json(raw)
    except ValidationError:
        send_json(conn, "error", {"message": "Frames must be JSON: {'event_type': 'subscribe'|'unsubscribe'|'pong', 'data': {...}}"})
        return
    if frame.event_type == "pong":
        return  # GRUPO_GAD's clients put data in their pongs: nothing in it matters
    handler = _client_handlers.get(frame.event_type)
    if handler is not None:
        handler(conn, frame.data)
        return
    try:
        wanted = Topics.model_validate(frame.data or {})
    except ValidationError:
        send_json(conn, "error", {"message": "subscribe/unsubscribe need data.topics (or data.events): a list of names"})
        return
    # GRUPO_GAD's clients name event types (data.events): each maps onto the topics that carry it.
    topics = set(wanted.topics or [])
    unknown_events = {name for name in wanted.events or [] if name not in EVENT_TYPE_TOPICS}
    for name in set(wanted.events or []) - unknown_events:
        topics |= EVENT_TYPE_TOPICS[name]
    decision = policy.decide_subscription(conn.usuario, topics)
    unknown = decision.unknown | unknown_events
    if unknown or decision.forbidden:
        send_json(conn, "error", {"message": "Unknown or forbidden topics.", "unknown": sorted(unknown), "forbidden": sorted(decision.forbidden)})
    if frame.event_type == "subscribe":
        conn.topics |= decision.granted
    else:
        conn.topics -= decision.granted
    send_json(conn, "subscriptions", {"topics": sorted(conn.topics)})
