"""Usuarios API: /api/v1/users (the seed's path) including /me."""

from __future__ import annotations

from flask import Blueprint, Response, url_for

from gad import policy
from gad.blueprints.http import etag, idempotent, if_match_version, no_content, no_input, no_query, parse_json, parse_query, raw_json
from gad.db_session import commit_or_problem
from gad.errors import CurrentPasswordRejected
from gad.models import Usuario
from gad.net import client_address
from gad.openapi import PageOf, documented
from gad.reqctx import current_flask_app
from gad.schemas.usuarios import UsuarioIn, UsuarioOut, UsuarioPatch, UsuarioQuery
from gad.security import current_user, require_authentication
from gad.services import auth, usuarios

bp = Blueprint("usuarios", __name__, url_prefix="/api/v1/users")
bp.before_request(require_authentication)


# UsuarioOut's fields the ORM keeps in an instance's __dict__ once loaded (debe_cambiar_clave is a property).
_LOADED_FIELDS = frozenset(UsuarioOut.model_fields) - {"debe_cambiar_clave"}


def _validated(usuario: Usuario) -> UsuarioOut:
    """``UsuarioOut.model_validate(usuario)``, from the values the instance holds when every column it needs is
    loaded: pydantic otherwise reads each field through SQLAlchemy's attribute instrumentation, a third of
    /users/me's view (docs/BENCHMARKS.md, issue 18's fifth pass). An expired or partly loaded instance takes the
    attribute path, which loads what is missing."""
    values = vars(usuario)
    if values.keys() >= _LOADED_FIELDS:
        return UsuarioOut.model_validate({**values, "debe_cambiar_clave": usuario.debe_cambiar_clave})
    return UsuarioOut.model_validate(usuario)


def _out(usuario: Usuario, status: int = 200, *, created: bool = False) -> Response:
    """One usuario as the caller may see it — personal fields it may not see are left out (gad/policy.py) —
    serialised by pydantic straight to JSON (no dict in between)."""
    out = _validated(usuario)
    hidden = policy.hidden_personal_fields(current_user(), out.id)
    body = out.model_dump_json(exclude=set(hidden) if hidden else None)  # an empty exclude still costs pydantic a pass
    response = current_flask_app().response_class(body, status=status, mimetype="application/json")
    response.headers["ETag"] = etag(out.version)
    if created:
        response.headers["Location"] = url_for("usuarios.get_usuario", usuario_id=out.id)
    return response


@bp.get("/me")
@documented(tags=("usuarios",), resp={"HTTP_200": UsuarioOut})
def me() -> Response:
    no_query()
    return _out(current_user())


@bp.get("", strict_slashes=False)  # GRUPO_GAD clients add a slash: same answer, no redirect
@documented(tags=("usuarios",), query=UsuarioQuery, resp={"HTTP_200": PageOf(UsuarioOut)})
def list_usuarios() -> Response:
    query = parse_query(UsuarioQuery)
    # PostgreSQL builds the page's JSON, personal fields left out as _out does (tests/test_list_json.py).
    return raw_json(
        usuarios.list_usuarios_json(
            current_user(),
            nivel=query.nivel,
            activo=query.activo,
            q=query.q,
            telegram_id=query.telegram_id,
            con_efectivo=query.con_efectivo,
            limit=query.limit,
            offset=query.offset,
        )
    )


@bp.post("", strict_slashes=False)  # a redirected POST would lose its body in many clients
@idempotent
@documented(tags=("usuarios",), json=UsuarioIn, resp={"HTTP_201": UsuarioOut})
def create_usuario() -> Response:
    body = parse_json(UsuarioIn)
    return _out(usuarios.create_usuario(current_user(), body.model_dump()), 201, created=True)


@bp.get("/<int:usuario_id>")
@documented(tags=("usuarios",), resp={"HTTP_200": UsuarioOut})
def get_usuario(usuario_id: int) -> Response:
    no_query()
    return _out(usuarios.get_usuario(current_user(), usuario_id))


@bp.route("/<int:usuario_id>", methods=["PATCH", "PUT"])
@documented(tags=("usuarios",), json=UsuarioPatch, resp={"HTTP_200": UsuarioOut})
def update_usuario(usuario_id: int) -> Response:
    actor = current_user()
    body = parse_json(UsuarioPatch)
    changes = body.model_dump(exclude_unset=True)
    try:
        usuario = usuarios.update_usuario(actor, usuario_id, changes, if_match_version(), client_address=client_address())
    except CurrentPasswordRejected:
        # The failed re-authentication is a security event; keep it through the error response's rollback.
        commit_or_problem()
        raise
    return _out(usuario)


@bp.delete("/<int:usuario_id>")
@documented(tags=("usuarios",), resp={"HTTP_204": None})
def deactivate_usuario(usuario_id: int) -> Response:
    no_input()
    usuarios.set_activo(current_user(), usuario_id, False, if_match_version())
    return no_content()


@bp.post("/<int:usuario_id>/reactivar")
@idempotent
@documented(tags=("usuarios",), resp={"HTTP_200": UsuarioOut})
def reactivate_usuario(usuario_id: int) -> Response:
    no_input()
    return _out(usuarios.set_activo(current_user(), usuario_id, True, if_match_version()))


@bp.post("/<int:usuario_id>/logout-all")
@documented(tags=("usuarios",), resp={"HTTP_204": None})
def logout_everywhere(usuario_id: int) -> Response:
    """An administrador (or the usuario) ends every session and token of this usuario."""
    no_input()
    auth.log_out_everywhere(current_user(), usuario_id)
    return no_content()
