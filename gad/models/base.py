"""Declarative base with a constraint naming convention (stable migration names) and time helpers."""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy
from sqlalchemy import DateTime, Integer, MetaData
from sqlalchemy.event import base as event_base
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

# The SQLAlchemy release _dispatch_without_probing was read against (requirements.txt pins it).
SQLALCHEMY_REVIEWED = "2.0.58"


def _dispatch_without_probing() -> None:
    """Configuring the mappers (every worker, at import) asks each of the ~220 mapped attributes for its event
    dispatcher. SQLAlchemy's ``slots_dispatcher`` first probes ``hasattr(attribute, "_slots_dispatch")``; the slot
    is still empty, so Python falls back to the attribute's ``__getattr__``, which asks the comparator, which
    builds and memoizes the column's ORM-annotated copy just to answer "no" — half of ``configure_mappers()``
    (~32 M instructions, ~6 ms a worker start). Reading the slot directly answers the same without the detour;
    a column's annotated copy is then built the first time a statement uses that attribute (~30 µs). Applied
    only to the reviewed release: another one keeps SQLAlchemy's own (tests/test_startup.py fails on it, for a
    review)."""
    if sqlalchemy.__version__ != SQLALCHEMY_REVIEWED:
        return

    def get(self: Any, obj: Any, cls: type[Any]) -> Any:
        if obj is None:
            return self.dispatch
        try:
            return object.__getattribute__(obj, "_slots_dispatch")
        except AttributeError:
            disp = self.dispatch._for_instance(obj)
            obj._slots_dispatch = disp
            return disp

    event_base.slots_dispatcher.__get__ = get  # type: ignore[method-assign]


_dispatch_without_probing()

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    # Every datetime column is timestamptz; set on the registry because Flask-SQLAlchemy subclasses the base.
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: DateTime(timezone=True)},
    )


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Versioned:
    """Optimistic concurrency: the version is the ETag; services compare it under a row lock."""

    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
