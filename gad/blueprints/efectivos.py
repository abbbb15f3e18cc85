"""Efectivos API: registry, availability and position."""

from __future__ import annotations

from flask import Blueprint, Response, url_for

from gad.blueprints.http import (
    etag,
    idempotent,
    if_match_version,
    json_response,
    no_content,
    no_input,
    no_query,
    parse_json,
    parse_query,
    raw_json,
    resource_response,
)
from gad.models import Efectivo
from gad.openapi import PageOf, documented
from gad.schemas.dispatch import CercanoOut, CercanosQuery
from gad.schemas.efectivos import DisponibilidadIn, EfectivoIn, EfectivoOut, EfectivoPatch, EfectivoQuery, UbicacionIn
from gad.security import caller_check, checks_caller_in_statement, current_user, require_authentication
from gad.services import dispatch, efectivos

bp = Blueprint("efectivos", __name__, url_prefix="/api/v1/efectivos")
bp.before_request(require_authentication)


def _out(efectivo: Efectivo, status: int = 200, *, created: bool = False) -> Response:
    out = EfectivoOut.model_validate(efectivo)
    return resource_response(out, status, url_for("efectivos.get_efectivo", efectivo_id=out.id) if created else None)


@bp.get("", strict_slashes=False)  # GRUPO_GAD clients add a slash: same answer, no redirect
@documented(tags=("efectivos",), query=EfectivoQuery, resp={"HTTP_200": PageOf(EfectivoOut)})
def list_efectivos() -> Response:
    query = parse_query(EfectivoQuery, list_fields=("estado_disponibilidad",))
    # PostgreSQL builds the page's JSON (tests/test_list_json.py holds it equal to Page[EfectivoOut]).
    body = efectivos.list_efectivos_json(
        current_user(),
        estados=query.estado_disponibilidad,
        unidad=query.unidad,
        especialidad=query.especialidad,
        activo=query.activo,
        en_servicio=query.en_servicio,
        q=query.q,
        limit=query.limit,
        offset=query.offset,
    )
    return raw_json(body)


@bp.get("/cercanos")
@documented(tags=("dispatch",), query=CercanosQuery, resp={"HTTP_200": list[CercanoOut]})
def cercanos() -> Response:
    query = parse_query(CercanosQuery)
    found = dispatch.nearest_efectivos(
        current_user(),
        query.lat,
        query.lng,
        radio_m=query.radio_m,
        limit=query.limit,
        solo_disponibles=query.solo_disponibles,
        incluir_antiguas=query.incluir_antiguas,
    )
    items = [
        CercanoOut(efectivo=EfectivoOut.model_validate(c.efectivo), distancia_m=round(c.distancia_m, 1), posicion_edad_s=c.posicion_edad_s).model_dump(
            mode="json"
        )
        for c in found
    ]
    return json_response(items)


@bp.post("", strict_slashes=False)  # a redirected POST would lose its body in many clients
@idempotent
@documented(tags=("efectivos",), json=EfectivoIn, resp={"HTTP_201": EfectivoOut})
def create_efectivo() -> Response:
    body = parse_json(EfectivoIn)
    return _out(efectivos.create_efectivo(current_user(), body.model_dump()), 201, created=True)


@bp.get("/<int:efectivo_id>")
@documented(tags=("efectivos",), resp={"HTTP_200": EfectivoOut})
def get_efectivo(efectivo_id: int) -> Response:
    no_query()
    return _out(efectivos.get_efectivo(current_user(), efectivo_id))


@bp.patch("/<int:efectivo_id>")
@checks_caller_in_statement  # the efectivo's lock checks its caller
@documented(tags=("efectivos",), json=EfectivoPatch, resp={"HTTP_200": EfectivoOut})
def update_efectivo(efectivo_id: int) -> Response:
    actor = current_user()
    changes = parse_json(EfectivoPatch).model_dump(exclude_unset=True)
    return _out(efectivos.update_efectivo(actor, efectivo_id, changes, if_match_version(), caller_check()))


@bp.delete("/<int:efectivo_id>")
@checks_caller_in_statement  # the efectivo's lock checks its caller
@documented(tags=("efectivos",), resp={"HTTP_204": None})
def deactivate_efectivo(efectivo_id: int) -> Response:
    no_input()
    efectivos.deactivate_efectivo(current_user(), efectivo_id, if_match_version(), caller_check())
    return no_content()


@bp.post("/<int:efectivo_id>/disponibilidad")
@checks_caller_in_statement  # the efectivo's lock checks its caller
@idempotent
@documented(tags=("efectivos",), json=DisponibilidadIn, resp={"HTTP_200": EfectivoOut})
def set_disponibilidad(efectivo_id: int) -> Response:
    actor = current_user()
    body = parse_json(DisponibilidadIn)
    return _out(efectivos.set_disponibilidad(actor, efectivo_id, body.estado, body.motivo, if_match_version(), caller_check(), desde=body.desde))


@bp.put("/<int:efectivo_id>/ubicacion")
@checks_caller_in_statement  # the position's statement checks its caller: no round trip of its own to re-read it
@documented(tags=("efectivos",), json=UbicacionIn, resp={"HTTP_200": EfectivoOut})
def set_ubicacion(efectivo_id: int) -> Response:
    actor = current_user()
    body = parse_json(UbicacionIn)
    answer = efectivos.report_position(actor, efectivo_id, body.lat, body.lng, body.registrado_en, caller_check())
    return raw_json(answer.document, {"ETag": etag(answer.version)})
