"""Notifications (/api/v1/notificaciones: mine, and their answers) and broadcast alerts (/api/v1/alertas)."""

from __future__ import annotations

from flask import Blueprint, Response, url_for

from gad.blueprints.http import idempotent, json_response, no_input, no_query, parse_json, parse_query
from gad.models import Alerta
from gad.openapi import PageOf, documented
from gad.schemas.common import Page, PageQuery
from gad.schemas.notificaciones import AckIn, AlertaIn, AlertaOut, NotificacionOut, NotificacionPage, NotificacionQuery
from gad.security import current_user, require_authentication
from gad.services import alertas, notificaciones

bp = Blueprint("notificaciones", __name__, url_prefix="/api/v1")
bp.before_request(require_authentication)


class AlertaQuery(PageQuery):
    abiertas: bool = False


@bp.get("/notificaciones", strict_slashes=False)  # collection paths answer with a trailing slash too (README)
@documented(tags=("notificaciones",), query=NotificacionQuery, resp={"HTTP_200": NotificacionPage})
def list_notificaciones() -> Response:
    query = parse_query(NotificacionQuery, list_fields=("causa",))
    items, total, unread = notificaciones.list_notificaciones(current_user(), query.model_dump(exclude={"limit", "offset"}), query.limit, query.offset)
    page = {"items": [notificaciones.payload(n) for n in items], "total": total, "limit": query.limit, "offset": query.offset, "no_leidas": unread}
    return json_response(NotificacionPage.model_validate(page))


@bp.get("/notificaciones/<int:notificacion_id>")
@documented(tags=("notificaciones",), resp={"HTTP_200": NotificacionOut})
def get_notificacion(notificacion_id: int) -> Response:
    no_query()
    return json_response(NotificacionOut.model_validate(notificaciones.payload(notificaciones.get_notificacion(current_user(), notificacion_id))))


@bp.post("/notificaciones/<int:notificacion_id>/ack")
@idempotent
@documented(tags=("notificaciones",), json=AckIn, resp={"HTTP_200": NotificacionOut})
def ack(notificacion_id: int) -> Response:
    actor = current_user()
    body = parse_json(AckIn)
    n = notificaciones.ack(actor, notificacion_id, body.respuesta, body.motivo)
    return json_response(NotificacionOut.model_validate(notificaciones.payload(n)))


def _alerta_out(alerta: Alerta, *, detail: bool, status: int = 200) -> Response:
    data = alertas.summary(alerta)
    if detail:
        data["faltan"] = alertas.missing(alerta)
    headers = {"Location": url_for("notificaciones.get_alerta", alerta_id=alerta.id)} if status == 201 else None
    return json_response(AlertaOut.model_validate(data), status, headers)


@bp.get("/alertas", strict_slashes=False)  # collection paths answer with a trailing slash too (README)
@documented(tags=("notificaciones",), query=AlertaQuery, resp={"HTTP_200": PageOf(AlertaOut)})
def list_alertas() -> Response:
    query = parse_query(AlertaQuery)
    items, total = alertas.list_alertas(current_user(), query.abiertas, query.limit, query.offset)
    page = {"items": [alertas.summary(a) for a in items], "total": total, "limit": query.limit, "offset": query.offset}
    return json_response(Page[AlertaOut].model_validate(page))


@bp.post("/alertas", strict_slashes=False)  # collection paths answer with a trailing slash too (README)
@idempotent
@documented(tags=("notificaciones",), json=AlertaIn, resp={"HTTP_201": AlertaOut})
def create_alerta() -> Response:
    actor = current_user()
    body = parse_json(AlertaIn)
    return _alerta_out(alertas.create_alerta(actor, body.model_dump()), detail=False, status=201)


@bp.get("/alertas/<int:alerta_id>")
@documented(tags=("notificaciones",), resp={"HTTP_200": AlertaOut})
def get_alerta(alerta_id: int) -> Response:
    no_query()
    return _alerta_out(alertas.get_alerta(current_user(), alerta_id), detail=True)


@bp.post("/alertas/<int:alerta_id>/reenviar")
@idempotent
@documented(tags=("notificaciones",), resp={"HTTP_200": AlertaOut})
def resend(alerta_id: int) -> Response:
    no_input()
    alerta, _ = alertas.resend(current_user(), alerta_id)
    return _alerta_out(alerta, detail=True)


@bp.post("/alertas/<int:alerta_id>/cerrar")
@idempotent
@documented(tags=("notificaciones",), resp={"HTTP_200": AlertaOut})
def close(alerta_id: int) -> Response:
    no_input()
    return _alerta_out(alertas.close(current_user(), alerta_id), detail=True)
