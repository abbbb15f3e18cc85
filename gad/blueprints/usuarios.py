"""Usuarios API: /api/v1/users (the seed's path) including /me."""

from __future__ import annotations

from flask import Blueprint, Response, url_for

from gad.blueprints.http import if_match_version, json_response, parse_json, parse_query, resource_response
from gad.openapi import documented
from gad.schemas.common import Page
from gad.schemas.usuarios import UsuarioIn, UsuarioOut, UsuarioPatch, UsuarioQuery
from gad.security import current_user, require_authentication
from gad.services import usuarios

bp = Blueprint("usuarios", __name__, url_prefix="/api/v1/users")
bp.before_request(require_authentication)


def _out(usuario: object, status: int = 200, *, created: bool = False) -> Response:
    out = UsuarioOut.model_validate(usuario)
    return resource_response(out, status, url_for("usuarios.get_usuario", usuario_id=out.id) if created else None)


@bp.get("/me")
@documented(tags=("usuarios",), resp={"HTTP_200": UsuarioOut})
def me() -> Response:
    return _out(current_user())


@bp.get("")
@documented(tags=("usuarios",), query=UsuarioQuery, resp={"HTTP_200": Page[UsuarioOut]})
def list_usuarios() -> Response:
    query = parse_query(UsuarioQuery)
    items, total = usuarios.list_usuarios(current_user(), nivel=query.nivel, activo=query.activo, q=query.q, limit=query.limit, offset=query.offset)
    page = Page[UsuarioOut](items=[UsuarioOut.model_validate(u) for u in items], total=total, limit=query.limit, offset=query.offset)
    return json_response(page)


@bp.post("")
@documented(tags=("usuarios",), json=UsuarioIn, resp={"HTTP_201": UsuarioOut})
def create_usuario() -> Response:
    body = parse_json(UsuarioIn)
    return _out(usuarios.create_usuario(current_user(), body.model_dump()), 201, created=True)


@bp.get("/<int:usuario_id>")
@documented(tags=("usuarios",), resp={"HTTP_200": UsuarioOut})
def get_usuario(usuario_id: int) -> Response:
    return _out(usuarios.get_usuario(current_user(), usuario_id))


@bp.route("/<int:usuario_id>", methods=["PATCH", "PUT"])
@documented(tags=("usuarios",), json=UsuarioPatch, resp={"HTTP_200": UsuarioOut})
def update_usuario(usuario_id: int) -> Response:
    actor = current_user()
    body = parse_json(UsuarioPatch)
    changes = body.model_dump(exclude_unset=True)
    return _out(usuarios.update_usuario(actor, usuario_id, changes, if_match_version()))


@bp.delete("/<int:usuario_id>")
@documented(tags=("usuarios",), resp={"HTTP_204": None})
def deactivate_usuario(usuario_id: int) -> Response:
    usuarios.set_activo(current_user(), usuario_id, False)
    return Response(status=204)


@bp.post("/<int:usuario_id>/reactivar")
@documented(tags=("usuarios",), resp={"HTTP_200": UsuarioOut})
def reactivate_usuario(usuario_id: int) -> Response:
    return _out(usuarios.set_activo(current_user(), usuario_id, True))
