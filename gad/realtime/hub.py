"""The per-process websocket hub and its PostgreSQL listener.

One listener greenlet per process holds a dedicated connection doing ``LISTEN gad_eventos``. A
notification only says "something committed"; the listener then reads ``eventos`` with ``id > last``
in id order. Because ids are gapless and in commit order (see gad.realtime.events), that read can
never skip an event, and a missed or duplicated notification is harmless. When the connection drops
(PostgreSQL restart, network), the listener reconnects with exponential backoff and catches up from
the last id it delivered. It also polls every few seconds as a safety net.

The hub fans each event out to the connections that subscribed to its topic and may see it (the
same policy as REST). Fan-out never blocks: each connection (``gad.realtime.connection``) has a
bounded queue drained by its own greenlet; a connection whose queue is full is closed with 1013 and
resumes with ``since``.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import Counter
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import gevent
import psycopg2
from gevent.socket import wait_read

from gad import metrics
from gad.caching import head_event_id
from gad.extensions import db
from gad.models import Evento, utcnow
from gad.principal_cache import principals

if TYPE_CHECKING:
    from gad.realtime.connection import Connection
from gad.realtime.events import NOTIFY_CHANNEL, SECURITY_TOPIC

logger = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
SAFETY_POLL_S = 5.0
CREDENTIAL_CHANGES = frozenset({"tokens_revoked", "user_disabled", "role_changed"})
BATCH = 500


class StoredEvent:
    """One row of the event log as the hub fans it out; its frame is encoded once, on first use.

    A plain class, not a dataclass: that execs its generated methods at every worker's import (docs/ARCHITECTURE.md
    §5 "Start-up"), and a NamedTuple cannot hold the cached frame."""

    def __init__(self, id: int, event_type: str, topic: str, payload: dict[str, Any], created_at: datetime) -> None:
        self.id = id
        self.event_type = event_type
        self.topic = topic
        self.payload = payload
        self.created_at = created_at

    def __repr__(self) -> str:
        return f"StoredEvent(id={self.id!r}, event_type={self.event_type!r}, topic={self.topic!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredEvent):
            return NotImplemented
        return (self.id, self.event_type, self.topic, self.payload, self.created_at) == (
            other.id,
            other.event_type,
            other.topic,
            other.payload,
            other.created_at,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as the dataclass was

    @cached_property
    def wire(self) -> bytes:
        """The complete websocket frame (server frames are unmasked, so identical for every client).

        Built once per event: fanning out to 1,000 sockets then costs 1,000 socket writes, not 1,000
        JSON encodings and frame encodings.
        """
        return encode_text_frame(self.frame)

    @cached_property
    def frame(self) -> str:
        # Encoded once per event, not once per connection: fan-out to 1,000 sockets shares one string.
        return json.dumps(
            {"id": self.id, "event_type": self.event_type, "topic": self.topic, "data": self.payload, "timestamp": self.created_at.isoformat()},
            default=str,
        )


EVENT_COLUMNS = "id, event_type, topic, payload, created_at"


def encode_text_frame(text: str) -> bytes:
    """RFC 6455 single unfragmented text frame, server to client (FIN set, opcode 1, no mask)."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


# The one query that reads the log in order: used by the listener (own connection) and by replays (pool).
EVENTS_AFTER_SQL = f"SELECT {EVENT_COLUMNS} FROM eventos WHERE id > %(after)s ORDER BY id LIMIT %(limit)s"


def row_to_event(row: tuple[Any, ...]) -> StoredEvent:
    return StoredEvent(int(row[0]), row[1], row[2], row[3] or {}, row[4])


def events_after(after: int, limit: int = BATCH) -> list[StoredEvent]:
    """Committed events with id > ``after``, oldest first, through the request's pooled session."""
    result = db.session.connection().exec_driver_sql(EVENTS_AFTER_SQL, {"after": after, "limit": limit})
    return [row_to_event(tuple(row)) for row in result]


def can_resume(since: int, retention_days: int) -> bool:
    """Resuming after ``since`` is exact only if the event right after it is still in the log, within retention."""
    head = head_event_id()
    if since >= head:
        return since == head
    following = db.session.get(Evento, since + 1)
    return following is not None and following.created_at >= utcnow() - timedelta(days=retention_days)


class Hub:
    """Registry of this process's connections, fed by one listener greenlet."""

    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        self.last_id = 0
        self.delivered = 0
        self.dsn: str | None = None
        self._listener: gevent.Greenlet | None = None
        self._ready = gevent.event.Event()
        self._positioned = False  # last_id was read from the event counter (the listener's first connection)
        self.connected = False
        self.shutting_down = False

    # --- lifecycle -----------------------------------------------------------------------------

    def ensure_started(self, dsn: str, wait: bool = True) -> None:
        """Start the listener once per process (never in the app factory): gunicorn starts it when a worker
        boots, without waiting; a websocket handshake waits for it to be connected."""
        if self._listener is None or self._listener.dead:
            self.dsn = dsn.replace("postgresql+psycopg2://", "postgresql://", 1)
            self._listener = gevent.spawn(self._listen_forever)
        if wait:
            self._ready.wait(timeout=10)

    def shutdown(self) -> None:
        """SIGTERM: close every socket with 1001 so clients resume on another machine."""
        self.shutting_down = True
        for conn in list(self.connections):
            conn.close(CLOSE_GOING_AWAY, "server shutting down")

    # --- listener ------------------------------------------------------------------------------

    def _listen_forever(self) -> None:
        backoff = 0.25
        while not self.shutting_down:
            conn = None
            try:
                conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="gad-listener")
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    if not self._positioned:  # once per process: a reconnect (or a restarted listener) catches up instead
                        cur.execute("SELECT last_id FROM eventos_contador WHERE id = 1")
                        self.last_id = int(cur.fetchone()[0])
                        self._positioned = True
                self.connected = True
                principals.set_listener_connected(True)
                self._ready.set()
                self._catch_up(conn)
                backoff = 0.25  # only once caught up: a failure that repeats at every catch-up keeps backing off
                while not self.shutting_down:
                    # Woken by the socket (one watcher, where gevent's select builds a result, a watcher and a
                    # timeout per call: a fifth of a wake, and a worker wakes for every commit of the service).
                    try:
                        wait_read(conn.fileno(), timeout=SAFETY_POLL_S)
                    except TimeoutError:
                        pass  # the safety poll: nothing heard, so the rows are read (below)
                    conn.poll()
                    heard = [notify.payload for notify in conn.notifies]
                    conn.notifies.clear()
                    if not self._skip_unwatched(heard):
                        self._catch_up(conn)
            except Exception as exc:
                # Not only PostgreSQL going away: a dead listener leaves every socket of the worker silent until
                # the next handshake restarts it, so any failure is logged and the listener reconnects and catches up.
                self.connected = False
                principals.set_listener_connected(False)
                if isinstance(exc, (psycopg2.Error, OSError)):
                    logger.warning("event listener lost PostgreSQL (%s); retrying in %.1fs", type(exc).__name__, backoff)
                else:
                    logger.exception("event listener failed; retrying in %.1fs", backoff)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass

    def _skip_unwatched(self, heard: list[str]) -> bool:
        """With no socket to feed, what the notifications say is all this process needs from those events: the
        head id (``events``: ``"<head id> <topic>,<topic>…"``, the transaction's last id and its topics) and whether
        a topic invalidates the principal cache. Reading the rows would cost every worker a query and the parsing
        of each event it then throws away (a fifth of a worker's CPU spent outside the requests under creates).
        Notifications arrive in commit order, which is id order, so every event up to the highest head heard
        has committed. False (read the rows) when a socket is open, on the safety poll (nothing heard), or for
        a notification without topics (a worker of an older version during a deploy)."""
        if self.connections or not heard:
            return False
        head = self.last_id
        topics: set[str] = set()
        for payload in heard:
            last, _, listed = payload.partition(" ")
            if not listed or not last.isdigit():
                return False
            head = max(head, int(last))
            topics.update(listed.split(","))
        principals.invalidate_for_topics(topics)
        self.last_id = head
        return True

    def _catch_up(self, conn: Any) -> None:
        while True:
            with conn.cursor() as cur:
                cur.execute(EVENTS_AFTER_SQL, {"after": self.last_id, "limit": BATCH})
                rows = cur.fetchall()
            for row in rows:
                self.publish(row_to_event(row))
            if len(rows) < BATCH:
                return

    # --- fan-out -------------------------------------------------------------------------------

    def publish(self, event: StoredEvent) -> None:
        if event.id <= self.last_id:
            return
        self.last_id = event.id
        try:
            principals.invalidate_for_topics({event.topic})
            if event.topic == SECURITY_TOPIC:
                self._end_revoked(event)
        except Exception:
            # last_id has moved on (a socket registering now starts after this event): the event must still go out.
            # A credential change that could not be applied fails closed: every socket of the worker authenticates again.
            logger.exception("applying event %s to this worker's credentials failed", event.id)
            if event.topic == SECURITY_TOPIC:
                for conn in list(self.connections):
                    conn.close(CLOSE_POLICY, "credentials revoked or changed; authenticate again")
        written = 0
        for conn in list(self.connections):
            try:
                if conn.wants(event) and conn.deliver(event):
                    written += 1
            except Exception:
                # One socket's failure must not end the fan-out (the listener greenlet would die with it, and
                # every socket of the worker would go quiet): that client resumes with since, the rest go on.
                logger.exception("fan-out of event %s to websocket %s failed; closing it", event.id, conn.id)
                conn.close(CLOSE_TRY_AGAIN, "server error; reconnect with ?since=<last id>")
        if written:
            # Once per fan-out, not per socket: at 1,000 sockets the metric calls cost as much as the writes.
            self.record_delivery(event, written)

    def _end_revoked(self, event: StoredEvent) -> None:
        """A socket lives on the credentials it was opened with. When that token or browser session is logged out, the
        usuario's tokens are revoked, or the usuario is deactivated or changes role, its sockets close
        with 1008 and the client authenticates again (and gets the topics its role now allows)."""
        jti = event.payload.get("jti") if event.event_type == "logout" else None
        session_id = event.payload.get("session_id") if event.event_type == "logout" else None
        usuario_id = event.payload.get("usuario_id") if event.event_type in CREDENTIAL_CHANGES else None
        if jti is None and session_id is None and usuario_id is None:
            return
        for conn in list(self.connections):
            if (
                (jti is not None and conn.jti == jti)
                or (session_id is not None and conn.session_id == session_id)
                or (usuario_id is not None and conn.usuario.id == usuario_id)
            ):
                conn.close(CLOSE_POLICY, "credentials revoked or changed; authenticate again")

    def register(self, conn: Connection) -> None:
        self.connections.add(conn)
        metrics.WEBSOCKETS_OPEN.inc()

    def unregister(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            metrics.WEBSOCKETS_OPEN.dec()

    def record_delivery(self, event: StoredEvent, frames: int = 1) -> None:
        """``frames`` copies of ``event`` were written, the last just now (one lag observation for them)."""
        self.delivered += frames
        metrics.EVENTS_DELIVERED.inc(frames)
        lag = time.time() - event.created_at.timestamp()
        if lag >= 0:
            metrics.COMMIT_TO_SEND.observe(lag)

    def stats(self) -> dict[str, Any]:
        by_nivel = Counter(str(conn.usuario.nivel) for conn in self.connections)
        return {
            "connections": len(self.connections),
            "connections_by_nivel": dict(by_nivel),
            "events_delivered": self.delivered,
            "last_event_id": self.last_id,
            "listener_connected": self.connected,
        }


hub = Hub()
