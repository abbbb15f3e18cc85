"""Tareas API at /api/v1/tasks (the seed's path): CRUD, state transitions, assignment, history."""

from __future__ import annotations

from flask import Blueprint, Response

from gad.blueprints.http import (
    created,
    etag,
    idempotent,
    if_match_version,
    no_content,
    no_input,
    no_query,
    parse_json,
    parse_query,
    raw_json,
    resource_response,
)
from gad.openapi import PageOf, documented
from gad.reqctx import current_request
from gad.schemas.dispatch import AsignadoDistancia, EmergenciaIn, EmergenciaOut
from gad.schemas.tareas import AsignacionIn, HistorialOut, TareaIn, TareaOut, TareaPatch, TareaQuery, TransicionIn
from gad.security import caller_check, checks_caller_in_statement, current_user, require_authentication
from gad.services import asignaciones, dispatch, tarea_json, tareas, transitions
from gad.services.tarea_queries import TareaRow

bp = Blueprint("tareas", __name__, url_prefix="/api/v1/tasks")
bp.before_request(require_authentication)


def _tarea_url(tarea_id: int) -> str:
    """What ``url_for("tareas.get_tarea", tarea_id=...)`` builds (``get_tarea``'s rule below), for the ``Location`` of
    every create: werkzeug's URL builder costs a create about 2 % of its CPU (docs/BENCHMARKS.md, issue 18).
    ``tests/test_tareas.py`` holds the two equal, behind a path prefix too."""
    return f"{current_request().script_root}{bp.url_prefix}/{tarea_id}"


def _out(row: TareaRow) -> Response:
    return resource_response(TareaOut.model_validate(row))


@bp.get("", strict_slashes=False)  # GRUPO_GAD clients add a slash: same answer, no redirect
@documented(tags=("tareas",), query=TareaQuery, resp={"HTTP_200": PageOf(TareaOut)})
def list_tareas() -> Response:
    query = parse_query(TareaQuery, list_fields=("estado", "tipo"))
    filters = query.model_dump(exclude={"limit", "offset"})
    # PostgreSQL builds the page's JSON (tests/test_tarea_json.py holds it equal to Page[TareaOut]).
    return raw_json(tarea_json.page_json(current_user(), filters, query.limit, query.offset))


@bp.post("", strict_slashes=False)  # a redirected POST would lose its body in many clients
@checks_caller_in_statement  # the INSERT checks its caller: no round trip of its own to re-read it
@idempotent
@documented(tags=("tareas",), json=TareaIn, resp={"HTTP_201": TareaOut})
def create_tarea() -> Response:
    actor = current_user()
    body = parse_json(TareaIn)
    # PostgreSQL built the new tarea's JSON (tests/test_tarea_json.py holds it equal to TareaOut's).
    tarea = tareas.create_tarea(actor, body.model_dump(), caller_check())
    return created(tarea.document, _tarea_url(tarea.id), tarea.version)


@bp.post("/emergency")
@idempotent
@documented(tags=("dispatch",), json=EmergenciaIn, resp={"HTTP_201": EmergenciaOut})
def emergency() -> Response:
    actor = current_user()
    body = parse_json(EmergenciaIn)
    result = dispatch.raise_emergency(
        actor, body.lat, body.lng, descripcion=body.descripcion, tipo=body.tipo, prioridad=body.prioridad, efectivos=body.efectivos
    )
    out = EmergenciaOut(
        tarea=TareaOut.model_validate(result.tarea),
        asignados=[AsignadoDistancia(efectivo_id=e, distancia_m=d) for e, d in result.asignados],
        sin_asignar=not result.asignados,
        motivo_sin_asignar=result.motivo_sin_asignar,
    )
    return created(out.model_dump_json(), _tarea_url(out.tarea.id), out.tarea.version)


@bp.get("/<int:tarea_id>")
@documented(tags=("tareas",), resp={"HTTP_200": TareaOut})
def get_tarea(tarea_id: int) -> Response:
    no_query()
    body, version = tarea_json.tarea_json(current_user(), tarea_id)
    return raw_json(body, {"ETag": etag(version)})


@bp.route("/<int:tarea_id>", methods=["PATCH", "PUT"])
@checks_caller_in_statement  # the tarea's lock checks its caller
@documented(tags=("tareas",), json=TareaPatch, resp={"HTTP_200": TareaOut})
def update_tarea(tarea_id: int) -> Response:
    actor = current_user()
    changes = parse_json(TareaPatch).model_dump(exclude_unset=True)
    return _out(tareas.update_tarea(actor, tarea_id, changes, if_match_version(), caller_check()))


@bp.delete("/<int:tarea_id>")
@checks_caller_in_statement  # the tarea's lock checks its caller
@documented(tags=("tareas",), resp={"HTTP_204": None})
def delete_tarea(tarea_id: int) -> Response:
    no_input()
    tareas.delete_tarea(current_user(), tarea_id, if_match_version(), caller_check())
    return no_content()


@bp.post("/<int:tarea_id>/estado")
@checks_caller_in_statement  # the tarea's lock checks its caller
@idempotent
@documented(tags=("tareas",), json=TransicionIn, resp={"HTTP_200": TareaOut})
def transition(tarea_id: int) -> Response:
    actor = current_user()
    body = parse_json(TransicionIn)
    return _out(transitions.transition(actor, tarea_id, body.estado, body.motivo, if_match_version(), caller_check(), body.ocurrido_en))


@bp.post("/<int:tarea_id>/efectivos")
@checks_caller_in_statement  # the tarea's lock checks its caller
@idempotent
@documented(tags=("tareas",), json=AsignacionIn, resp={"HTTP_200": TareaOut})
def assign(tarea_id: int) -> Response:
    actor = current_user()
    body = parse_json(AsignacionIn)
    return _out(asignaciones.assign(actor, tarea_id, body.efectivo_ids, if_match_version(), caller_check()))


@bp.delete("/<int:tarea_id>/efectivos/<int:efectivo_id>")
@checks_caller_in_statement  # the tarea's lock checks its caller
@documented(tags=("tareas",), resp={"HTTP_200": TareaOut})
def unassign(tarea_id: int, efectivo_id: int) -> Response:
    no_input()
    return _out(asignaciones.unassign(current_user(), tarea_id, efectivo_id, if_match_version(), caller_check()))


@bp.get("/<int:tarea_id>/historial")
@documented(tags=("tareas",), resp={"HTTP_200": list[HistorialOut]})
def historial(tarea_id: int) -> Response:
    no_query()
    # PostgreSQL builds the JSON (tests/test_list_json.py holds it equal to list[HistorialOut]).
    return raw_json(tarea_json.historial_json(current_user(), tarea_id))
