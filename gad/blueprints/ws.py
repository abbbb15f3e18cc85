"""The live stream: ``/ws/connect`` (flask-sock) and ``/ws/stats``.

Protocol (JSON text frames). Server → client: first ``connection_ack``; then events
``{"id","event_type","topic","data","timestamp"}``; ``ping`` every WS_PING_INTERVAL s; ``error`` for a
bad client frame; ``resync_required`` when ``since`` is older than the retention window. Client →
server: ``subscribe`` / ``unsubscribe`` with ``{"topics": [...]}``, ``pong``, and ``notification_received``
with ``{"ids": [...]}`` (delivery of ``notification`` frames).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, Response, current_app, g, request
from gevent.queue import Empty
from pydantic import ValidationError

from gad import policy
from gad.blueprints.http import json_response
from gad.errors import ValidationProblem, pydantic_errors
from gad.extensions import db, sock
from gad.models import utcnow
from gad.realtime.hub import BATCH, CLOSE_POLICY, Connection, PartialFrame, StoredEvent, can_resume, events_after, hub
from gad.schemas.ws import ClientFrame, Received, Topics, WsConnectQuery
from gad.security import current_user, resolve_user
from gad.services import notificaciones
from gad.vocab import Nivel

logger = logging.getLogger(__name__)

bp = Blueprint("ws", __name__, url_prefix="/ws")


def _origin_allowed() -> bool:
    """Cookie-authenticated sockets must come from our own pages or a listed origin (no cross-site hijack)."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    if origin in current_app.config.get("CORS_ORIGINS", []):
        return True
    return urlparse(origin).netloc == request.host


@bp.before_request
def _authenticate_handshake() -> None:
    """Reject before the upgrade (401/403), so a client without valid credentials never gets a socket."""
    if request.endpoint != "ws.connect":
        return
    # Decline permessage-deflate (browsers always offer it): a compressor per socket more than doubled
    # the memory of an idle connection (49.6 -> 108.9 KB), and event frames are written pre-encoded and
    # uncompressed anyway. simple-websocket accepts whatever the client offers, so the offer is removed.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    token = request.args.get("token")
    usuario, method, claims = resolve_user(token=token, allow_session=_origin_allowed())
    g.current_user, g.auth_method, g.token_claims = usuario, method, claims
    try:
        g.ws_query = WsConnectQuery.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise ValidationProblem("Invalid websocket parameters.", errors=pydantic_errors(exc, "query")) from None


def _send_json(conn: Connection, event_type: str, data: dict[str, Any]) -> None:
    conn.offer(json.dumps({"event_type": event_type, "data": data, "timestamp": utcnow().isoformat()}))


def _replay(conn: Connection, since: int) -> None:
    """Send visible events with id > since from the log; live events queued meanwhile are de-duplicated by id."""
    cursor = since
    while True:
        batch = events_after(cursor)
        for event in batch:
            cursor = event.id
            if conn.wants(event):
                conn.offer(event)
        if len(batch) < BATCH:
            return


def _send_queued(conn: Connection) -> bool:
    """Write every queued frame, in order; False once the connection is to end (sentinel or dead peer)."""
    while True:
        try:
            item = conn.queue.get_nowait()
        except Empty:
            return True
        conn.writing = True  # the fan-out must not write between the pieces of this frame
        try:
            if isinstance(item, StoredEvent):
                if item.id <= conn.last_sent:  # already sent by the replay (seam between replay and live)
                    continue
                # Pre-encoded frame straight to the socket; every other frame goes through simple-websocket.
                conn.ws.sock.sendall(item.wire)
                conn.last_sent = item.id
                hub.record_delivery(item)
            elif isinstance(item, PartialFrame):
                conn.ws.sock.sendall(item.data)
                hub.record_delivery(item.event)
            elif item is None:
                return False
            else:
                conn.ws.send(item)
        except Exception:  # noqa: BLE001 - a dead peer ends the connection
            conn.closed = True
            return False
        finally:
            conn.writing = False


def _serve(conn: Connection, expires_at: float | None, ping_interval: float) -> None:
    """The socket's only greenlet: sleeps until woken (frame queued, client frame, close), the next ping or
    the token's expiry; frames leave in queue order, one writer at a time."""
    ws = conn.ws
    next_ping = time.monotonic() + ping_interval
    while not conn.closed and ws.connected:
        timeout = next_ping - time.monotonic()
        if expires_at is not None:
            timeout = min(timeout, expires_at - time.time())
        conn.wake.wait(timeout=max(timeout, 0))
        conn.wake.clear()
        # Look before calling receive(): on an empty buffer even receive(timeout=0) yields to the hub, and a
        # fan-out to 1,000 sockets would pay 1,000 extra hub cycles.
        while ws.input_buffer:
            _handle_client_frame(conn, ws.receive(timeout=0))
        if not _send_queued(conn):
            return
        if expires_at is not None and time.time() >= expires_at:
            conn.close(CLOSE_POLICY, "token expired")
            return
        if time.monotonic() >= next_ping:
            _send_json(conn, "ping", {})
            next_ping = time.monotonic() + ping_interval


def _handle_client_frame(conn: Connection, raw: str | bytes) -> None:
    try:
        frame = ClientFrame.model_validate_json(raw)
    except ValidationError:
        _send_json(conn, "error", {"message": "Frames must be JSON: {'event_type': 'subscribe'|'unsubscribe'|'pong', 'data': {...}}"})
        return
    if frame.event_type == "pong":
        return
    if frame.event_type == "notification_received":
        _report_delivery(conn, frame.data.ids if isinstance(frame.data, Received) else [])
        return
    topics = set(frame.data.topics if isinstance(frame.data, Topics) else [])
    allowed = policy.visible_topics(conn.usuario)
    unknown = topics - set(policy.TOPIC_MIN_NIVEL)
    forbidden = (topics & set(policy.TOPIC_MIN_NIVEL)) - allowed
    if unknown or forbidden:
        _send_json(conn, "error", {"message": "Unknown or forbidden topics.", "unknown": sorted(unknown), "forbidden": sorted(forbidden)})
    granted = topics & allowed
    if frame.event_type == "subscribe":
        conn.topics |= granted
    else:
        conn.topics -= granted
    _send_json(conn, "subscriptions", {"topics": sorted(conn.topics)})


def _report_delivery(conn: Connection, ids: list[int]) -> None:
    """The client got these ``notification`` frames: record delivery (only of its own usuario's notifications)."""
    if not ids:
        _send_json(conn, "error", {"message": "notification_received needs {'ids': [notification ids]}"})
        return
    try:
        notificaciones.mark_delivered(conn.usuario.id, ids)
        db.session.commit()
    except Exception:  # a database hiccup must not end the socket; answering marks delivery too
        db.session.rollback()
        logger.warning("recording delivery of notifications %s failed", ids, exc_info=True)
    finally:
        db.session.remove()  # the socket keeps no pooled connection between frames


@sock.route("/connect", bp=bp)
def connect(ws: Any) -> None:
    usuario = g.current_user
    query: WsConnectQuery = g.ws_query
    claims = g.token_claims
    config = current_app.config
    # simple-websocket's reader sets ws.event when a client frame arrives or the peer closes: sharing it
    # as the connection's wake-up lets one greenlet serve the socket in both directions.
    conn = Connection(
        ws=ws,
        usuario=usuario,
        topics=policy.visible_topics(usuario),
        queue_size=config["WS_QUEUE_SIZE"],
        jti=str(claims["jti"]) if claims else None,
        wake=ws.event,
    )
    # Detach the usuario from the request's session: the socket outlives it.
    db.session.expunge(usuario)
    hub.ensure_started(config["SQLALCHEMY_DATABASE_URI"])
    hub.register(conn)  # from here on live events queue up, so nothing falls between replay and live
    try:
        if query.since is not None and not can_resume(query.since, config["EVENT_RETENTION_DAYS"]):
            conn.last_sent = hub.last_id
            _send_json(conn, "resync_required", {"since": query.since, "last_event_id": hub.last_id})
        else:
            _send_json(conn, "connection_ack", {"connection_id": conn.id, "last_event_id": hub.last_id, "server_time": utcnow().isoformat()})
            if query.since is not None:
                _replay(conn, query.since)
            else:
                conn.last_sent = hub.last_id
        db.session.remove()  # give the pooled connection back: a socket may stay open for hours
        conn.live = True
        _serve(conn, float(claims["exp"]) if claims else None, config["WS_PING_INTERVAL"])
    finally:
        conn.closed = True
        hub.unregister(conn)


@bp.get("/stats")
def ws_stats() -> Response:
    policy.require_nivel(current_user(), Nivel.ADMINISTRADOR, "Websocket statistics")
    return json_response(hub.stats())
