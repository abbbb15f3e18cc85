"""The live stream: ``/ws/connect`` (flask-sock) and ``/ws/stats``.

Protocol (JSON text frames; the socket itself is run by gad.realtime.connection). Server → client: first ``connection_ack``; then events
``{"id","event_type","topic","data","timestamp"}``; ``ping`` every WS_PING_INTERVAL s; ``error`` for a
bad client frame; ``resync_required`` when ``since`` is older than the retention window. Client →
server: ``subscribe`` / ``unsubscribe`` with ``{"topics": [...]}``, ``pong``, and ``notification_received``
with ``{"ids": [...]}`` (delivery of ``notification`` frames, recorded here). A client message longer than
WS_MAX_MESSAGE_SIZE closes the socket with 1009 (simple-websocket, through config.py's SOCK_SERVER_OPTIONS).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, Response, current_app, g, request
from pydantic import ValidationError

from gad import policy
from gad.blueprints.http import json_response, no_query, parse_query
from gad.errors import AppError
from gad.extensions import db, sock
from gad.realtime.connection import Connection, SessionLink, register_client_frame, send_json, serve
from gad.realtime.hub import hub
from gad.schemas.ws import Received, WsConnectQuery
from gad.security import check_page_usuario, current_browser_session, current_user, resolve_user
from gad.services import notificaciones, replay, sesiones
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
    g.ws_hub_mark = hub.last_id  # what this worker had fanned out when the credentials were checked
    usuario, method, claims = resolve_user(token=token, allow_session=_origin_allowed())
    policy.require_chosen_password(usuario)
    g.current_user, g.auth_method, g.token_claims = usuario, method, claims
    g.ws_session = current_browser_session() if method == "session" else None
    # Repeated parameters and unknown ones are refused as on every endpoint (blueprints.http.parse_query).
    g.ws_query = parse_query(WsConnectQuery)
    if method == "session":
        check_page_usuario(usuario, request.args.get("usuario"))


def _report_delivery(conn: Connection, data: Any) -> None:
    """The client got these ``notification`` frames: record delivery (only of its own usuario's notifications)."""
    try:
        received = Received.model_validate(data or {})
    except ValidationError:
        send_json(conn, "error", {"message": "notification_received needs {'ids': [notification ids]}"})
        return
    try:
        notificaciones.mark_delivered(conn.usuario.id, received.ids)
        db.session.commit()
    except Exception:  # a database hiccup must not end the socket; answering marks delivery too
        db.session.rollback()
        logger.warning("recording delivery of notifications %s failed", received.ids, exc_info=True)
    finally:
        db.session.remove()  # the socket keeps no pooled connection between frames


register_client_frame("notification_received", _report_delivery)


@sock.route("/connect", bp=bp)
def connect(ws: Any) -> None:
    """Authenticated by ``_authenticate_handshake``; from here on the connection module owns the socket."""
    usuario = g.current_user
    sesion = g.ws_session
    link = None
    if sesion is not None:
        every_s = min(300.0, current_app.config["SESSION_IDLE_MINUTES"] * 60 / 3)
        link = SessionLink(id=sesion.id, expires_at=sesion.expires_at.timestamp(), keep_alive=_keep_alive(sesion.id), every_s=every_s)
    serve(
        ws,
        usuario,
        g.ws_query,
        g.token_claims,
        current_app.config,
        session=link,
        replay_filter=lambda batch: replay.readable_now(usuario, batch),
        credentials_hold=_credentials_hold,
    )


def _credentials_hold() -> bool:
    """Still the same usuario at the same level, with credentials not revoked? Asked once the socket is registered:
    a logout, deactivation or role change the hub fanned out since the handshake's check reached no socket of it.
    Only when the hub has moved since that check; the event that moved it dropped the token cache, so this
    reads PostgreSQL."""
    if hub.last_id == g.ws_hub_mark:
        return True
    g.pop("browser_session", None)  # resolved once per request: resolve it again
    try:
        usuario, _, _ = resolve_user(token=request.args.get("token"), allow_session=_origin_allowed())
    except AppError:
        return False
    return usuario.id == g.current_user.id and usuario.nivel == g.current_user.nivel


def _keep_alive(sesion_id: int) -> Callable[[], None]:
    """Touch the socket's browser session in a transaction of its own (the socket holds no connection)."""

    def touch() -> None:
        try:
            sesiones.keep_alive(sesion_id)
            db.session.commit()
        except Exception:  # a failed touch must not end the socket; at worst the session idles out
            db.session.rollback()
            logger.warning("could not keep browser session %s alive", sesion_id, exc_info=True)
        finally:
            db.session.remove()

    return touch


@bp.get("/stats")
def ws_stats() -> Response:
    no_query()
    usuario = current_user()
    policy.require_chosen_password(usuario)
    policy.require_nivel(usuario, Nivel.ADMINISTRADOR, "Websocket statistics")
    return json_response(hub.stats())
