"""Helpers shared by services: pagination, free-text search, optimistic-lock checks, applying validated changes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, or_, select

from gad.errors import PreconditionFailed
from gad.extensions import db

T = TypeVar("T")


def _count(query: Select[Any]) -> int:
    return int(db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)


def paginate(query: Select[tuple[T]], limit: int, offset: int) -> tuple[list[T], int]:
    total = _count(query)
    items = list(db.session.scalars(query.limit(limit).offset(offset)))
    return items, total


def paginate_rows(query: Select[Any], limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page as plain mappings and the total in one round trip (``count(*) OVER ()`` is computed before
    LIMIT); only a page past the end needs a second query for the total."""
    counted = query.add_columns(func.count().over().label("_total")).limit(limit).offset(offset)
    rows = [dict(row) for row in db.session.execute(counted).mappings()]
    if not rows:
        return [], _count(query)
    total = rows[0]["_total"]
    for row in rows:
        del row["_total"]
    return rows, int(total)


def found_in(columns: Iterable[Any], pattern: Any) -> ColumnElement[bool]:
    """Any of ``columns`` holds a search box's text: ``pattern`` is bound to its ``gad.text.search_regex``."""
    return or_(*(column.regexp_match(pattern, flags="i") for column in columns))


def contains_pattern(text: str) -> str:
    """The ``ILIKE`` pattern of an exact spelling (a DNI): rows containing the text as typed. ``%`` and ``_`` in it are
    escaped (PostgreSQL's default escape character is the backslash, escaped too): a search for ``_`` finds
    codes with an underscore, not every row."""
    escaped = text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def count_by(column: Any, vocabulary: Iterable[str], *conditions: Any) -> dict[str, int]:
    """Rows per value of ``column``, with every value of the vocabulary present (0 when absent)."""
    counts = dict.fromkeys(vocabulary, 0)
    rows = db.session.execute(select(column, func.count()).where(*conditions).group_by(column))
    counts.update({value: int(n) for value, n in rows})
    return counts


# What a weak ``If-Match`` (W/"3") stands for: If-Match compares strongly (RFC 9110 13.1.1), so it matches no
# version. Judged where a stale one is, after the row is found and the caller allowed (404 and 403 come first).
WEAK_ETAG = -1


def check_version(current: int, expected: int | None, what: str) -> None:
    """Compare the If-Match version, read under a row lock, with the row's version (412 on mismatch)."""
    if expected == WEAK_ETAG:
        raise PreconditionFailed(
            f"If-Match compares ETags strongly and a weak one (W/…) never matches: send the {what}'s ETag without W/.",
            headers={"ETag": f'"{current}"'},
            current_version=current,
        )
    if expected is not None and expected != current:
        raise PreconditionFailed(
            f"The {what} was changed by someone else (version {current}, you sent {expected}); reload and retry.",
            headers={"ETag": f'"{current}"'},
            current_version=current,
        )


def changes_nothing(obj: Any, changes: dict[str, Any]) -> bool:
    """True when every value in ``changes`` (column names) equals what ``obj`` holds, an empty dict included: such a
    PATCH is a no-op (no new version, no event), so a client re-sending a whole form does not announce a change."""
    return all(getattr(obj, name) == value for name, value in changes.items())


def apply_changes(obj: Any, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        setattr(obj, name, value)
