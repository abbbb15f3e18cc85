"""An Out model's JSON built by PostgreSQL: field order, instants, pages and the compile-once trick in one place."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Integer, Select, Text, bindparam, case, cast, column, func, literal_column, select, table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

# Instants as pydantic renders a UTC datetime (the sessions run in UTC, see config.py): "Z" for the
# offset, microseconds only when there are any, and then all six digits.
# Constants are rendered into the SQL, not bound: a statement with fifty parameters pays for each of them.
_WHOLE_SECOND: ColumnElement[str] = literal_column("""'YYYY-MM-DD"T"HH24:MI:SS"Z"'""")
_PY_MAX: ColumnElement[Any] = literal_column("'9999-12-31 23:59:59.999999+00'::timestamptz")
_PY_MIN: ColumnElement[Any] = literal_column("'0001-01-01 00:00:00+00'::timestamptz")
_UTC: ColumnElement[str] = literal_column("'UTC'")
_SECOND: ColumnElement[str] = literal_column("'second'")
_FRACTION: ColumnElement[str] = literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'""")
EMPTY_ARRAY: ColumnElement[Any] = text("'[]'::json")  # type: ignore[assignment]
PAGE = "page"  # the name of the page subquery every frozen item expression refers to


def iso(column: Any) -> ColumnElement[str]:
    """``column`` (timestamptz) as the string ``model_dump_json`` writes for it; NULL stays NULL. An instant
    Python cannot hold reads as datetime.min/max there (gad/pg.py), so it is clamped the same way here."""
    column = case((column > _PY_MAX, _PY_MAX), (column < _PY_MIN, _PY_MIN), else_=column)
    return func.to_char(func.timezone(_UTC, column), case((func.date_trunc(_SECOND, column) == column, _WHOLE_SECOND), else_=_FRACTION))


def key(name: str) -> ColumnElement[str]:
    assert name.isidentifier()  # field names of our own models, safe to render as SQL literals
    return literal_column(f"'{name}'")


def _is_instant(annotation: Any) -> bool:
    return annotation is datetime or datetime in typing.get_args(annotation)


def document(model: type[BaseModel], columns: dict[str, Any], *, exclude: Collection[str] = ()) -> ColumnElement[Any]:
    """json_build_object over ``model``'s fields in its order, each from ``columns`` by the name the model
    validates it from (its ``validation_alias`` when it has one, as ``lng`` from ``lon``); ``exclude`` leaves
    fields out as ``model_dump(exclude=...)`` does. The Out model stays the contract: a field added to it
    without a column here fails when the statement is built instead of going missing from responses."""
    pairs: list[Any] = []
    for name, info in model.model_fields.items():
        if name in exclude:
            continue
        source = info.validation_alias if isinstance(info.validation_alias, str) else name
        value = columns[source]
        pairs += [key(name), iso(value) if _is_instant(info.annotation) else value]
    return func.json_build_object(*pairs)


def frozen(build: Callable[[Any], ColumnElement[Any]], names: Iterable[str], source: str = PAGE) -> ColumnElement[Any]:
    """``build`` applied to the columns ``names`` of a relation called ``source``, compiled to SQL text once:
    building and cache-keying such an expression tree (some 80 nodes for a tarea) on every request cost more
    CPU than the query it describes. Correlated sub-selects inside it stay correlated to ``source``."""
    relation = table(source, *(column(name) for name in names))
    statement = select(build(relation.c).label("doc")).select_from(relation)
    compiled = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    match = re.fullmatch(rf"SELECT (.*) AS doc\s+FROM {source}", compiled, re.DOTALL)
    assert match is not None, compiled
    return literal_column(match.group(1))


class _PageColumns:
    """``page.<name>`` by attribute, without the subquery's column collection: proxying every column of a
    40-column subquery on each request cost about a millisecond, and the outer select needs only a few."""

    def __getattr__(self, name: str) -> ColumnElement[Any]:
        assert name.isidentifier()
        return literal_column(f"{PAGE}.{name}")


def page(matching: Select[Any], order: Iterable[Any], limit: int, offset: int, item: Callable[[Any], ColumnElement[Any]]) -> Select[tuple[str]]:
    """The statement answering a Page[Out] document as text: rows, order, total and limits in one round trip.

    ``matching`` is the filtered, visibility-narrowed query; ``item`` builds one item from the columns of the
    ``page`` subquery (usually a ``frozen`` expression). The total is a count of its own rather than
    ``count(*) OVER ()`` on the page: a window over every matching row made PostgreSQL build and sort all of
    them, forty columns wide, before the first of the page (60 ms per list at 50,000 tareas); counted apart it
    reads only what the filters need, and the page stops after ``limit`` rows of an index scan.
    """
    # Named binds, not literals: the same filters give the same SQL for any page (pg.Prepared reuses it).
    limit_bind, offset_bind = bindparam("limit", limit, type_=Integer), bindparam("offset", offset, type_=Integer)
    rows = matching.add_columns(func.row_number().over(order_by=list(order)).label("_rn")).limit(limit_bind).offset(offset_bind).subquery(PAGE)
    columns = _PageColumns()
    everything = select(func.count()).select_from(matching.order_by(None).subquery()).scalar_subquery()
    items = func.coalesce(func.json_agg(aggregate_order_by(item(columns), columns._rn)), EMPTY_ARRAY)
    body = func.json_build_object(
        key("items"),
        items,
        key("total"),
        everything,
        key("limit"),
        cast(limit_bind, Integer),
        key("offset"),
        cast(offset_bind, Integer),
    )
    return select(cast(body, Text)).select_from(rows)
