"""Tarea reads whose JSON PostgreSQL builds: one statement per request, the bytes passed through untouched."""

from __future__ import annotations

import re
import typing
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Text, bindparam, case, cast, column, func, literal, literal_column, select, table, text, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

from gad import policy
from gad.errors import Forbidden, NotFound
from gad.extensions import db
from gad.models import Asignacion, Efectivo, Tarea, Usuario
from gad.schemas.tareas import AsignadoOut, TareaOut
from gad.services.tarea_queries import READ_FORBIDDEN, readable, visible_to
from gad.services.tareas import filtered, ordering

# Instants as pydantic renders a UTC datetime (the sessions run in UTC, see config.py): "Z" for the
# offset, microseconds only when there are any, and then all six digits.
# Constants are rendered into the SQL, not bound: a statement with fifty parameters pays for each of them.
_WHOLE_SECOND: ColumnElement[str] = literal_column("""'YYYY-MM-DD"T"HH24:MI:SS"Z"'""")
_PY_MAX: ColumnElement[Any] = literal_column("'9999-12-31 23:59:59.999999+00'::timestamptz")
_PY_MIN: ColumnElement[Any] = literal_column("'0001-01-01 00:00:00+00'::timestamptz")
_UTC: ColumnElement[str] = literal_column("'UTC'")
_SECOND: ColumnElement[str] = literal_column("'second'")
_FRACTION: ColumnElement[str] = literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'""")


def iso(column: Any) -> ColumnElement[str]:
    """``column`` (timestamptz) as the string ``model_dump_json`` writes for it; NULL stays NULL. An instant
    Python cannot hold reads as datetime.min/max there (gad/pg.py), so it is clamped the same way here."""
    column = case((column > _PY_MAX, _PY_MAX), (column < _PY_MIN, _PY_MIN), else_=column)
    return func.to_char(func.timezone(_UTC, column), case((func.date_trunc(_SECOND, column) == column, _WHOLE_SECOND), else_=_FRACTION))


def _key(name: str) -> ColumnElement[str]:
    assert name.isidentifier()  # field names of our own models, safe to render as SQL literals
    return literal_column(f"'{name}'")


def _is_instant(annotation: Any) -> bool:
    return annotation is datetime or datetime in typing.get_args(annotation)


def _object(model: type[TareaOut] | type[AsignadoOut], columns: dict[str, Any]) -> ColumnElement[Any]:
    """json_build_object over ``model``'s fields, in its order: the Out model stays the contract, and a
    field added to it without a column here fails at import instead of going missing from responses."""
    pairs: list[Any] = []
    for name, info in model.model_fields.items():
        source = info.validation_alias if isinstance(info.validation_alias, str) else name
        column = columns[source]
        pairs += [_key(name), iso(column) if _is_instant(info.annotation) else column]
    return func.json_build_object(*pairs)


# A tarea's active assignments, oldest first, as TareaOut.efectivos (correlated to the tarea outside).
_ASIGNACION_COLUMNS = {
    "efectivo_id": Efectivo.id,
    "codigo_interno": Efectivo.codigo_interno,
    "nombre": Efectivo.nombre,
    "asignado_en": Asignacion.asignado_en,
}


def _efectivos(tarea_id: Any) -> ColumnElement[Any]:
    agg = func.json_agg(aggregate_order_by(_object(AsignadoOut, _ASIGNACION_COLUMNS), Asignacion.asignado_en, Asignacion.id))
    return (
        select(func.coalesce(agg, text("'[]'::json")))
        .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
        .where(Asignacion.tarea_id == tarea_id, Asignacion.liberado_en.is_(None))
        .scalar_subquery()
    )


def tarea_object(columns: Any) -> ColumnElement[Any]:
    """The TareaOut document of the tarea whose columns (by column name) are ``columns``."""
    by_name = {column.key: getattr(columns, column.key) for column in Tarea.__table__.c}
    return _object(TareaOut, by_name | {"efectivos": _efectivos(by_name["id"])})


# GET one: the document, the version (for the ETag) and whether the actor may read it, in one statement;
# a tarea that exists but is not readable is 403, as the Python path answers (not a 404).
_ONE = select(cast(tarea_object(Tarea.__table__.c), Text), Tarea.version).where(Tarea.id == bindparam("tarea_id", type_=Integer), Tarea.deleted_at.is_(None))
_ONE_SUPERVISOR = _ONE.add_columns(true())
_ONE_OTHERS = _ONE.add_columns(readable(bindparam("actor_id", type_=Integer)))


def tarea_json(actor: Usuario, tarea_id: int) -> tuple[str, int]:
    """A readable tarea as TareaOut JSON, and its version. Raises NotFound, Forbidden."""
    supervisor = policy.is_supervisor(actor)
    row = db.session.execute(_ONE_SUPERVISOR if supervisor else _ONE_OTHERS, {"tarea_id": tarea_id, "actor_id": actor.id}).first()
    if row is None:
        raise NotFound(f"Tarea {tarea_id} does not exist.")
    body, version, visible = row
    if not visible:
        raise Forbidden(READ_FORBIDDEN)
    return body, version


def _page_object_sql() -> str:
    """``tarea_object`` over the list's ``page`` subquery, compiled to SQL text once: building and
    cache-keying that expression tree (some 80 nodes) on every request cost more CPU than it saved."""
    page = table("page", *(column(c.name) for c in Tarea.__table__.c))
    compiled = str(select(tarea_object(page.c).label("doc")).select_from(page).compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    match = re.fullmatch(r"SELECT (.*) AS doc\s+FROM page", compiled, re.DOTALL)
    assert match is not None, compiled
    return match.group(1)


_PAGE_OBJECT: ColumnElement[Any] = literal_column(_page_object_sql())


def page_json(actor: Usuario, filters: dict[str, Any], limit: int, offset: int) -> str:
    """A page of readable tareas as Page[TareaOut] JSON: rows, order, total and assignments in one statement.

    ``count(*) OVER ()`` gives the total with the page; only a page past the end, which has no row to carry
    it, falls back to counting (COALESCE evaluates that sub-select only then).
    """
    matching = filtered(visible_to(select(Tarea).where(Tarea.deleted_at.is_(None)), actor), filters)
    order = ordering(filters.get("sort"))
    page = (
        matching.add_columns(func.count().over().label("_total"), func.row_number().over(order_by=order).label("_rn"))
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )
    everything = select(func.count()).select_from(matching.order_by(None).subquery()).scalar_subquery()
    items = func.coalesce(func.json_agg(aggregate_order_by(_PAGE_OBJECT, page.c._rn)), text("'[]'::json"))
    document = func.json_build_object(
        _key("items"),
        items,
        _key("total"),
        func.coalesce(func.max(page.c._total), everything),
        _key("limit"),
        cast(literal(limit), Integer),
        _key("offset"),
        cast(literal(offset), Integer),
    )
    return str(db.session.scalar(select(cast(document, Text)).select_from(page)))
