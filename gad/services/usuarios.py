"""Usuarios: create, list, read, update (with the self/admin split), deactivate, reactivate."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, Select, String, bindparam, case, exists, false, func, literal_column, or_, select

from gad import policy
from gad.db_session import for_update, read_row
from gad.errors import Conflict, Forbidden, NotFound, ValidationProblem, field_error
from gad.extensions import db
from gad.models import Efectivo, Usuario
from gad.models.usuario import DEBE_CAMBIAR_CLAVE
from gad.pg import PreparedShapes
from gad.realtime import events
from gad.schemas.events import RoleChanged, TokensRevoked, UserCreated, UserDisabled, UserUpdated
from gad.schemas.usuarios import UsuarioOut
from gad.services import auth, json_sql
from gad.services.common import apply_changes, changes_nothing, check_version, contains_pattern, found_in, paginate
from gad.text import dni_spelled, search_regex
from gad.vocab import Nivel

PUBLIC_FIELDS = ("email", "nombre", "apellido", "dni", "telefono", "telegram_id", "nivel", "verificado", "activo")


def _usuario_payload(usuario: Usuario) -> dict[str, Any]:
    return policy.event_payload_without_personal_data(
        {"id": usuario.id, "email": usuario.email, "nombre": usuario.nombre, "apellido": usuario.apellido, "nivel": usuario.nivel, "activo": usuario.activo}
    )


# How the pages name a duplicated field, in the refusal's Spanish mensaje.
_CAMPO = {"email": "correo", "dni": "DNI", "telegram_id": "ID de Telegram"}


def _check_unique(email: str | None, dni: str | None, telegram_id: int | None, exclude_id: int | None = None) -> None:
    """Name the duplicated field (409) instead of surfacing a bare constraint violation."""
    checks: list[tuple[str, Any]] = []
    if email is not None:
        checks.append(("email", func.lower(Usuario.email) == email.lower()))
    if dni is not None:
        checks.append(("dni", Usuario.dni == dni))
    if telegram_id is not None:
        checks.append(("telegram_id", Usuario.telegram_id == telegram_id))
    for field, condition in checks:
        query = select(Usuario.id).where(condition)
        if exclude_id is not None:
            query = query.where(Usuario.id != exclude_id)
        if db.session.scalar(query) is not None:
            raise Conflict(f"A usuario with this {field} already exists.", mensaje=f"Ya hay un usuario con ese {_CAMPO[field]}.", field=field)


def create_usuario(actor: Usuario | None, data: dict[str, Any]) -> Usuario:
    """Create a usuario (administradores only; ``actor`` None means the CLI). Raises Forbidden, Conflict, ValidationProblem."""
    if actor is not None:
        policy.require_nivel(actor, Nivel.ADMINISTRADOR, "Creating usuarios")
    data = dict(data)
    password = data.pop("password")
    auth.check_password_policy(password, data["email"])
    _check_unique(data["email"], data["dni"], data.get("telegram_id"))
    usuario = Usuario(**data, password_hash=auth.hash_password(password))
    # A password an administrador chose is known to two people: the person replaces it at first login.
    usuario.debe_cambiar_clave = actor is not None
    db.session.add(usuario)
    db.session.flush()
    created = UserCreated.model_validate(_usuario_payload(usuario))
    events.record(db.session(), created, topic="usuarios", entity_type="usuario", entity_id=usuario.id, actor_id=actor.id if actor else None)
    return usuario


def get_usuario(actor: Usuario, usuario_id: int) -> Usuario:
    """Raises NotFound or Forbidden (an efectivo may read only themself)."""
    usuario = db.session.get(Usuario, usuario_id)
    if usuario is None:
        raise NotFound(f"Usuario {usuario_id} does not exist.")
    if not policy.can_read_usuario(actor, usuario_id):
        raise Forbidden("You may only read your own profile.")
    return usuario


def _matching(
    actor: Usuario, nivel: int | None, activo: bool | None, q: str | None, telegram_id: int | None, con_efectivo: bool | None = None
) -> Select[tuple[Usuario]]:
    """The usuarios matching the filters, in list order (id). Raises Forbidden below supervisor, and for a lookup by
    telegram_id below administrador. The values are named bind parameters (``_filter_values``): the same filters
    present give the same SQL."""
    _require_lister(actor, telegram_id)
    values = _filter_values(nivel, q, telegram_id)
    query: Select[tuple[Usuario]] = select(Usuario)
    if "nivel" in values:
        query = query.where(Usuario.nivel == bindparam("nivel", values["nivel"], type_=Integer))
    if "telegram_id" in values:
        query = query.where(Usuario.telegram_id == bindparam("telegram_id", values["telegram_id"], type_=BigInteger))
    if activo is not None:
        query = query.where(Usuario.activo.is_(activo))
    if con_efectivo is not None:
        linked = exists().where(Efectivo.usuario_id == Usuario.id)
        query = query.where(linked if con_efectivo else ~linked)
    if "q" in values:
        searched = found_in((Usuario.nombre, Usuario.apellido, Usuario.email), bindparam("q", values["q"], type_=String))
        if policy.may_search_by_dni(actor):
            searched = or_(searched, Usuario.dni.ilike(bindparam("q_dni", values["q_dni"], type_=String)))
        query = query.where(searched)
    return query.order_by(Usuario.id)


def _require_lister(actor: Usuario, telegram_id: int | None) -> None:
    if not policy.is_supervisor(actor):
        raise Forbidden("Listing usuarios requires nivel 2 (supervisor) or higher.")
    if telegram_id is not None and not policy.may_find_by_telegram_id(actor):
        raise Forbidden("Looking usuarios up by telegram_id requires nivel 3 (administrador).")


def _filter_values(nivel: int | None, q: str | None, telegram_id: int | None) -> dict[str, Any]:
    """The values of the filters that are present, by the name of the bind parameter each becomes."""
    values: dict[str, Any] = {}
    if nivel is not None:
        values["nivel"] = nivel
    if telegram_id is not None:
        values["telegram_id"] = telegram_id
    if q:
        values["q"] = search_regex(q)
        # DNIs are stored as their letters and digits: "12.345.678-z" finds 12345678Z.
        values["q_dni"] = contains_pattern(dni_spelled(q) or q)
    return values


def list_usuarios(
    actor: Usuario,
    *,
    nivel: int | None,
    activo: bool | None,
    q: str | None,
    limit: int,
    offset: int,
    telegram_id: int | None = None,
    con_efectivo: bool | None = None,
) -> tuple[list[Usuario], int]:
    """A page of usuarios as ORM objects and the total (the API answers ``list_usuarios_json``). Raises Forbidden."""
    return paginate(_matching(actor, nivel, activo, q, telegram_id, con_efectivo), limit, offset)


# Python truthiness of a JSON value, as ``Usuario.debe_cambiar_clave`` reads its flag out of ``extra``.
_FALSY_JSON: ColumnElement[Any] = literal_column("""('null'::jsonb, 'false'::jsonb, '0'::jsonb, '""'::jsonb, '[]'::jsonb, '{}'::jsonb)""")


def _out_columns(columns: Any) -> dict[str, Any]:
    flag = columns.extra.op("->")(literal_column(f"'{DEBE_CAMBIAR_CLAVE}'"))
    return {c.key: c for c in columns} | {"debe_cambiar_clave": func.coalesce(flag.op("NOT IN")(_FALSY_JSON), false())}


@functools.cache
def _page_item(hidden: frozenset[str]) -> ColumnElement[Any]:
    """A UsuarioOut over the page without the ``hidden`` personal fields (left out, as ``model_dump(exclude=...)``)."""
    return json_sql.frozen(lambda page: json_sql.document(UsuarioOut, _out_columns(page), exclude=hidden), (c.name for c in Usuario.__table__.c))


# One prepared page statement per shape: the filters present, activo (true, false or absent), the fields the
# reader may not see of its own row and of others', and whether q searches the dni (gad/policy.py decides).
_PAGES = PreparedShapes(64)


def list_usuarios_json(
    actor: Usuario,
    *,
    nivel: int | None,
    activo: bool | None,
    q: str | None,
    limit: int,
    offset: int,
    telegram_id: int | None = None,
    con_efectivo: bool | None = None,
) -> str:
    """``list_usuarios`` as Page[UsuarioOut] JSON built by PostgreSQL in one statement, each usuario without the
    personal fields ``actor`` may not see (gad/policy.py decides: one shape for the actor's own row, one for
    everybody else's). Raises Forbidden."""
    _require_lister(actor, telegram_id)  # on every call: the statement may be built already
    values = _filter_values(nivel, q, telegram_id)
    own_hidden = policy.hidden_personal_fields(actor, actor.id)
    others_hidden = policy.hidden_personal_fields(actor, 0)  # 0: no usuario has it, so "someone else"
    shape = (tuple(values), activo, con_efectivo, own_hidden, others_hidden, policy.may_search_by_dni(actor))

    def build() -> Any:
        own, others = _page_item(own_hidden), _page_item(others_hidden)

        def item(page: Any) -> ColumnElement[Any]:
            return own if own is others else case((page.id == bindparam("actor_id", actor.id, type_=Integer), own), else_=others)

        return json_sql.page(_matching(actor, nivel, activo, q, telegram_id, con_efectivo), (Usuario.id,), limit, offset, item)

    row = read_row(_PAGES.get(shape, build), values | {"limit": limit, "offset": offset, "actor_id": actor.id})
    assert row is not None  # an aggregate: always one row
    return str(row[0])


def update_usuario(actor: Usuario, usuario_id: int, changes: dict[str, Any], expected_version: int | None, *, client_address: str = "unknown") -> Usuario:
    """Admins change any field; users change their own name, phone and password (with the current one).

    A wrong current password counts as a failed login from ``client_address``.
    Raises NotFound, Forbidden, PreconditionFailed, Conflict, ValidationProblem, CurrentPasswordRejected,
    TooManyAttempts.
    """
    return _update(actor, _locked(usuario_id), changes, expected_version, client_address)


def _update(actor: Usuario, usuario: Usuario, changes: dict[str, Any], expected_version: int | None, client_address: str) -> Usuario:
    """``update_usuario`` of a usuario whose row this transaction has locked."""
    current_password = changes.pop("current_password", None)
    policy.check_usuario_update(actor, usuario.id, set(changes))
    check_version(usuario.version, expected_version, "usuario")
    if "password" not in changes and changes_nothing(usuario, changes):
        return usuario
    _check_unique(changes.get("email"), changes.get("dni"), changes.get("telegram_id"), exclude_id=usuario.id)
    before = _usuario_payload(usuario)
    password = changes.pop("password", None)
    if password is not None:
        _change_password(actor, usuario, password, current_password, changes.get("email") or usuario.email, client_address)
    _check_self_demotion(actor, usuario, changes)
    revoke = password is not None or (changes.get("activo") is False and usuario.activo)
    if "nivel" in changes and changes["nivel"] != usuario.nivel:
        events.record_security(RoleChanged(usuario_id=usuario.id, from_=usuario.nivel, to=changes["nivel"]), actor.id)
    apply_changes(usuario, changes)
    usuario.version += 1
    if revoke:
        auth.revoke_all_tokens(usuario)
        events.record_security(TokensRevoked(usuario_id=usuario.id, reason="password" if password else "deactivated"), actor.id)
    db.session.flush()
    updated = UserUpdated.model_validate({"before": before, "after": _usuario_payload(usuario)})
    events.record(db.session(), updated, topic="usuarios", entity_type="usuario", entity_id=usuario.id, actor_id=actor.id)
    return usuario


def _change_password(actor: Usuario, usuario: Usuario, password: str, current_password: str | None, email: str, client_address: str) -> None:
    """Set a new password; changing one's own (an administrador included) needs the current one, and a
    wrong one counts as a failed login from ``client_address``."""
    if not policy.is_admin(actor) or actor.id == usuario.id:
        if not current_password:
            raise ValidationProblem(
                "The current password is required to change your password.",
                errors=[field_error("body.current_password", "current_password", "missing or wrong")],
            )
        auth.check_current_password(usuario, current_password, client_address)
        if password == current_password:
            # No change at all, and for a password an administrador chose, the rule it must lift would stay unmet.
            raise ValidationProblem(
                "The new password must differ from the current one.",
                errors=[field_error("body.password", "password_unchanged", "must differ from the current password")],
            )
    auth.check_password_policy(password, email)
    usuario.password_hash = auth.hash_password(password)
    # An administrador's reset must be replaced by the person; their own change clears the flag.
    usuario.debe_cambiar_clave = actor.id != usuario.id


def _check_self_demotion(actor: Usuario, usuario: Usuario, changes: dict[str, Any]) -> None:
    """Nobody deactivates themself or lowers their own nivel: the last administrador could lock everyone out."""
    if usuario.id != actor.id:
        return
    if changes.get("activo") is False and usuario.activo:
        raise Conflict("You cannot deactivate yourself.")
    if changes.get("nivel") is not None and changes["nivel"] < actor.nivel:
        raise Conflict("You cannot lower your own nivel; ask another administrador.")


def _locked(usuario_id: int) -> Usuario:
    """The usuario, its row locked for the rest of the transaction. Raises NotFound."""
    usuario = db.session.scalar(for_update(select(Usuario).where(Usuario.id == usuario_id)))
    if usuario is None:
        raise NotFound(f"Usuario {usuario_id} does not exist.")
    return usuario


def set_activo(actor: Usuario, usuario_id: int, activo: bool, expected_version: int | None) -> Usuario:
    """Deactivate (soft; revokes every token) or reactivate. Administradores only. A usuario already so is left as
    it is: no new version, no event (a repeated DELETE or reactivation changes nothing).
    Raises Forbidden, NotFound, PreconditionFailed, Conflict."""
    policy.require_nivel(actor, Nivel.ADMINISTRADOR, "Deactivating usuarios" if not activo else "Reactivating usuarios")
    usuario = _locked(usuario_id)
    if usuario.activo is activo:
        check_version(usuario.version, expected_version, "usuario")
        return usuario
    usuario = _update(actor, usuario, {"activo": activo}, expected_version, "unknown")
    if not activo:
        events.record_security(UserDisabled(usuario_id=usuario_id), actor.id)
    return usuario
