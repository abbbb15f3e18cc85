"""Replays by today's visibility: an event from the log is replayed only if its reader may read the resource now."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import select

from gad import policy
from gad.extensions import db
from gad.models import Efectivo, Usuario
from gad.services.tarea_queries import tareas_now


class LoggedEvent(Protocol):
    """An event of the log as a replay reads it: the hub's ``StoredEvent`` or an ``Evento`` row."""

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> dict[str, Any]: ...


E = TypeVar("E", bound=LoggedEvent)


def readable_now(actor: Usuario, batch: list[E]) -> list[E]:
    """The events of ``batch`` that ``policy.can_see_replayed_event`` lets ``actor`` have (two or three queries):
    the rule of every look back at the log, a socket's replay and the board's recent events alike."""
    if policy.is_supervisor(actor):
        return batch
    tarea_ids = {e.payload["id"] for e in batch if e.topic in policy.TAREA_TOPICS and isinstance(e.payload.get("id"), int)}
    efectivo_ids = {e.payload["id"] for e in batch if e.topic == "efectivos" and isinstance(e.payload.get("id"), int)}
    tareas = tareas_now(tarea_ids)
    owners: dict[int, int | None] = {}
    if efectivo_ids:
        owners = {row[0]: row[1] for row in db.session.execute(select(Efectivo.id, Efectivo.usuario_id).where(Efectivo.id.in_(sorted(efectivo_ids))))}
    return [e for e in batch if policy.can_see_replayed_event(actor, e.topic, e.payload, tareas, owners)]
