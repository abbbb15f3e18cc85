"""The event log: the audit trail for administradores, and the latest events each usuario may see (the board's feed)."""

from __future__ import annotations

from flask import Blueprint, Response

from gad.blueprints.http import json_response, parse_query, raw_json
from gad.openapi import documented
from gad.schemas.eventos import EventoFrameOut, EventoPage, EventoQuery, RecientesQuery
from gad.security import current_user, require_authentication
from gad.services import audit

bp = Blueprint("eventos", __name__, url_prefix="/api/v1/eventos")
bp.before_request(require_authentication)


@bp.get("", strict_slashes=False)  # GRUPO_GAD clients add a slash: same answer, no redirect
@documented(tags=("audit",), query=EventoQuery, resp={"HTTP_200": EventoPage})
def list_eventos() -> Response:
    query = parse_query(EventoQuery)
    # PostgreSQL builds the page's JSON (tests/test_list_json.py holds it equal to EventoPage).
    return raw_json(audit.list_events_json(current_user(), **query.model_dump()))


@bp.get("/recientes")
@documented(tags=("audit",), query=RecientesQuery, resp={"HTTP_200": list[EventoFrameOut]})
def recent_eventos() -> Response:
    query = parse_query(RecientesQuery)
    items = audit.recent_events(current_user(), query.limit)
    return json_response([EventoFrameOut.model_validate(e).model_dump(mode="json") for e in items])
