"""Tarea reads whose JSON PostgreSQL builds: one statement per request, the bytes passed through untouched."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Integer, Text, bindparam, cast, func, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

from gad import policy
from gad.db_session import read_row
from gad.errors import Forbidden, NotFound
from gad.models import HistorialEstado, Tarea, Usuario
from gad.pg import Prepared, PreparedShapes
from gad.schemas.tareas import HistorialOut
from gad.services import json_sql
from gad.services.json_sql import EMPTY_ARRAY, document
from gad.services.tarea_queries import HISTORIAL_ORDER, READ_FORBIDDEN, readable, tarea_object, visible_to
from gad.services.tareas import filter_values, filtered, ordering
from gad.vocab import ID_MAX

# The statements below are built the first time a worker serves them, not at import: building their trees
# cost every worker's start-up some 30 M instructions (~6 ms) that /health and most first requests never use.


@functools.cache
def _one() -> tuple[Prepared, Prepared]:
    """GET one, for a supervisor and for anyone else: the document, the version (for the ETag) and whether the
    actor may read it, in one statement; a tarea that exists but is not readable is 403, as the Python path
    answers (not a 404)."""
    one = select(cast(tarea_object(Tarea.__table__.c), Text), Tarea.version).where(Tarea.id == bindparam("tarea_id", type_=Integer), Tarea.deleted_at.is_(None))
    return Prepared(one.add_columns(true())), Prepared(one.add_columns(readable(bindparam("actor_id", type_=Integer))))


def _readable(statements: tuple[Prepared, Prepared], actor: Usuario, tarea_id: int) -> Any:
    """The row of ``statements`` (for a supervisor, for anyone else) about a tarea ``actor`` may read, without
    its last column (whether the actor may). Raises NotFound, or Forbidden for a tarea that exists but is not
    readable (as the Python path answers)."""
    if tarea_id > ID_MAX:  # no row has it, and it would not fit the statement's integer parameter
        raise NotFound(f"Tarea {tarea_id} does not exist.")
    supervisor, others = statements
    row = read_row(supervisor if policy.is_supervisor(actor) else others, {"tarea_id": tarea_id, "actor_id": actor.id})
    if row is None:
        raise NotFound(f"Tarea {tarea_id} does not exist.")
    if not row[-1]:
        raise Forbidden(READ_FORBIDDEN)
    return row[:-1]


def tarea_json(actor: Usuario, tarea_id: int) -> tuple[str, int]:
    """A readable tarea as TareaOut JSON, and its version. Raises NotFound, Forbidden."""
    body, version = _readable(_one(), actor, tarea_id)
    return body, version


@functools.cache
def _historial() -> tuple[Prepared, Prepared]:
    """A tarea's history, oldest first, as list[HistorialOut], with the same found/readable answer as GET one
    (the same visibility: tests/test_list_json.py holds both equal to the Python path)."""
    items = (
        select(func.coalesce(func.json_agg(aggregate_order_by(document(HistorialOut, dict(HistorialEstado.__table__.c)), *HISTORIAL_ORDER)), EMPTY_ARRAY))
        .where(HistorialEstado.tarea_id == Tarea.id)
        .scalar_subquery()
    )
    historial = select(cast(items, Text)).where(Tarea.id == bindparam("tarea_id", type_=Integer), Tarea.deleted_at.is_(None))
    return Prepared(historial.add_columns(true())), Prepared(historial.add_columns(readable(bindparam("actor_id", type_=Integer))))


def historial_json(actor: Usuario, tarea_id: int) -> str:
    """A readable tarea's state history as list[HistorialOut] JSON, in one statement. Raises NotFound, Forbidden."""
    (body,) = _readable(_historial(), actor, tarea_id)
    return str(body)


@functools.cache
def _page_object() -> ColumnElement[Any]:
    """The list's item over the ``page`` subquery, compiled once (json_sql.frozen), at the first list."""
    return json_sql.frozen(tarea_object, (c.name for c in Tarea.__table__.c))


# One prepared page statement per shape: who reads (a supervisor reads all, anyone else through the read
# rule), which filters are present and the sort (the schema bounds filters and sorts, so shapes are few).
_PAGES = PreparedShapes(128)


def page_json(actor: Usuario, filters: dict[str, Any], limit: int, offset: int) -> str:
    """A page of readable tareas as Page[TareaOut] JSON: rows, order, total and assignments in one statement."""
    values = filter_values(filters)
    shape = (policy.is_supervisor(actor), tuple(values), filters.get("sort"))

    def build() -> Any:
        matching = filtered(visible_to(select(Tarea).where(Tarea.deleted_at.is_(None)), actor), filters)
        return json_sql.page(matching, ordering(filters.get("sort")), limit, offset, lambda _page: _page_object())

    statement = _PAGES.get(shape, build)
    params = values | {"limit": limit, "offset": offset, "actor_id": actor.id}
    row = read_row(statement, params)
    assert row is not None  # an aggregate: always one row
    return str(row[0])
