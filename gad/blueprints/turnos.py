"""Turnos, licencias and the planning week: JSON API plus the planning page of the dashboard."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, Response, abort, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from gad.blueprints.http import etag, idempotent, if_match_version, json_response, no_content, no_input, no_query, parse_json, parse_query
from gad.blueprints.pages import _login_redirect, _render
from gad.models import Licencia, Turno
from gad.openapi import PageOf, documented
from gad.policy import is_supervisor
from gad.schemas.common import Page
from gad.schemas.turnos import (
    AgendaQuery,
    LicenciaIn,
    LicenciaOut,
    PlanningOut,
    PlanningQuery,
    TurnoCheckIn,
    TurnoCheckOut,
    TurnoIn,
    TurnoOut,
    TurnoPatch,
    TurnosCreated,
)
from gad.security import current_user, page_user, require_authentication
from gad.services import turnos
from gad.vocab import TipoLicencia, TipoTurno

bp = Blueprint("turnos", __name__, url_prefix="/api/v1")
bp.before_request(require_authentication)
pages = Blueprint("planificacion", __name__)


def _turno(turno: Turno) -> TurnoOut:
    return TurnoOut.model_validate(turnos.turno_dict(turno))


def _licencia(licencia: Licencia) -> LicenciaOut:
    return LicenciaOut.model_validate(turnos.licencia_dict(licencia))


@bp.get("/turnos", strict_slashes=False)  # collection paths answer with a trailing slash too (README)
@documented(tags=("turnos",), query=AgendaQuery, resp={"HTTP_200": PageOf(TurnoOut)})
def list_turnos() -> Response:
    q = parse_query(AgendaQuery)
    items, total = turnos.list_turnos(current_user(), efectivo_id=q.efectivo_id, unidad=q.unidad, desde=q.desde, hasta=q.hasta, limit=q.limit, offset=q.offset)
    return json_response(Page[TurnoOut](items=[_turno(t) for t in items], total=total, limit=q.limit, offset=q.offset))


@bp.post("/turnos", strict_slashes=False)  # collection paths answer with a trailing slash too (README)
@idempotent
@documented(tags=("turnos",), json=TurnoIn, resp={"HTTP_201": TurnosCreated})
def create_turnos() -> Response:
    body = parse_json(TurnoIn)
    created = turnos.create_turnos(current_user(), body.model_dump(exclude_none=True))
    out = TurnosCreated(items=[_turno(t) for t in created], total=len(created), serie=created[0].serie)
    headers = {"Location": url_for("turnos.get_turno", turno_id=created[0].id)} if len(created) == 1 else {}
    return json_response(out, 201, headers)


@bp.post("/turnos/comprobar")
@documented(tags=("turnos",), json=TurnoCheckIn, resp={"HTTP_200": TurnoCheckOut})
def check_turnos() -> Response:
    """What creating (or moving, with ``skip_turno``) these shifts would collide with; writes nothing."""
    body = parse_json(TurnoCheckIn)
    rangos, found = turnos.comprobar_turnos(current_user(), body.model_dump(exclude_none=True))
    out = {"ocurrencias": [{"inicio": s, "fin": e} for s, e in rangos], "conflictos": [c.as_dict() for c in found]}
    return json_response(TurnoCheckOut.model_validate(out))


@bp.get("/turnos/<int:turno_id>")
@documented(tags=("turnos",), resp={"HTTP_200": TurnoOut})
def get_turno(turno_id: int) -> Response:
    no_query()
    turno = turnos.get_turno(current_user(), turno_id)
    return json_response(_turno(turno), headers={"ETag": etag(turno.version)})


@bp.patch("/turnos/<int:turno_id>")
@documented(tags=("turnos",), json=TurnoPatch, resp={"HTTP_200": TurnoOut})
def update_turno(turno_id: int) -> Response:
    actor = current_user()
    changes = parse_json(TurnoPatch).model_dump(exclude_unset=True)
    turno = turnos.update_turno(actor, turno_id, changes, if_match_version())
    return json_response(_turno(turno), headers={"ETag": etag(turno.version)})


@bp.delete("/turnos/<int:turno_id>")
@documented(tags=("turnos",), resp={"HTTP_204": None})
def delete_turno(turno_id: int) -> Response:
    no_input()
    turnos.delete_turno(current_user(), turno_id, if_match_version())
    return no_content()


@bp.get("/licencias", strict_slashes=False)  # collection paths answer with a trailing slash too (README)
@documented(tags=("turnos",), query=AgendaQuery, resp={"HTTP_200": PageOf(LicenciaOut)})
def list_licencias() -> Response:
    q = parse_query(AgendaQuery)
    items, total = turnos.list_licencias(current_user(), efectivo_id=q.efectivo_id, desde=q.desde, hasta=q.hasta, limit=q.limit, offset=q.offset)
    return json_response(Page[LicenciaOut](items=[_licencia(item) for item in items], total=total, limit=q.limit, offset=q.offset))


@bp.post("/licencias", strict_slashes=False)  # collection paths answer with a trailing slash too (README)
@idempotent
@documented(tags=("turnos",), json=LicenciaIn, resp={"HTTP_201": LicenciaOut})
def create_licencia() -> Response:
    body = parse_json(LicenciaIn)
    licencia = turnos.create_licencia(current_user(), body.model_dump())
    return json_response(_licencia(licencia), 201, {"ETag": etag(licencia.version)})


@bp.delete("/licencias/<int:licencia_id>")
@documented(tags=("turnos",), resp={"HTTP_204": None})
def delete_licencia(licencia_id: int) -> Response:
    no_input()
    turnos.delete_licencia(current_user(), licencia_id, if_match_version())
    return no_content()


@bp.get("/planificacion/semana")
@documented(tags=("turnos",), query=PlanningQuery, resp={"HTTP_200": PlanningOut})
def planning_week() -> Response:
    query = parse_query(PlanningQuery)
    data: dict[str, Any] = turnos.semana(current_user(), query.unidad, date.fromisoformat(query.semana) if query.semana else None)
    return json_response(data)


@pages.get("/planificacion")
def planning_page() -> WerkzeugResponse | str:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    if not is_supervisor(usuario):
        abort(403)
    return _render("planificacion.html", usuario, tipos_turno=[t.value for t in TipoTurno], tipos_licencia=[t.value for t in TipoLicencia])
