"""The events a tarea change writes to the log: one payload shape for every tarea event."""

from __future__ import annotations

from typing import Any, TypeVar

from gad.extensions import db
from gad.models import Tarea, Usuario
from gad.realtime import events
from gad.schemas.events import TareaEvent
from gad.services.tarea_queries import reader_usuario_ids

E = TypeVar("E", bound=TareaEvent)


# The columns of a tarea every tarea event carries (``gad.schemas.events.TareaEvent``), by the event's field name.
# Each is also the name of its Tarea attribute (``tarea_fields`` reads them so): a column mapped under another
# attribute name would need its attribute here.
SUMMARY_COLUMNS = {
    "id": "id",
    "codigo": "codigo",
    "titulo": "titulo",
    "tipo": "tipo",
    "prioridad": "prioridad",
    "estado": "estado",
    "es_emergencia": "es_emergencia",
    "delegado_usuario_id": "delegado_usuario_id",
    "creado_por_usuario_id": "creado_por_usuario_id",
    "ubicacion_lat": "ubicacion_lat",
    "ubicacion_lng": "ubicacion_lon",
    "version": "version",
}


def tarea_fields(tarea: Tarea) -> dict[str, Any]:
    """The summary of a tarea every tarea event carries (``SUMMARY_COLUMNS``)."""
    return {field: getattr(tarea, column) for field, column in SUMMARY_COLUMNS.items()}


def tarea_event(kind: type[E], tarea: Tarea, extra: dict[str, Any] | None = None, assigned: set[int] | None = None) -> E:
    """A ``kind`` payload for ``tarea`` as it is now, with who reads it through an assignment now (the
    websocket read policy needs it: the efectivos of an ended tarea see its closing, as REST shows it them).

    Raises pydantic's ValidationError if ``extra`` does not fit ``kind``: a writer cannot drift from the schema.
    """
    if assigned is None:
        assigned = reader_usuario_ids(tarea.id)
    return event_of(kind, tarea_fields(tarea), assigned, extra)


def event_of(kind: type[E], fields: dict[str, Any], assigned: set[int], extra: dict[str, Any] | None = None) -> E:
    """A ``kind`` payload from a tarea's summary (``tarea_fields``, or the ``SUMMARY_COLUMNS`` a statement returned)."""
    return kind.model_validate(fields | {"asignados_usuario_ids": sorted(assigned)} | (extra or {}))


def record_tarea_event(
    kind: type[TareaEvent], tarea: Tarea, actor: Usuario | None, extra: dict[str, Any] | None = None, assigned: set[int] | None = None
) -> None:
    """Queue a ``kind`` event for ``tarea`` in the current transaction (see ``tarea_event``)."""
    record_payload(tarea_event(kind, tarea, extra, assigned), actor)


def record_summary(kind: type[TareaEvent], fields: dict[str, Any], actor: Usuario | None) -> None:
    """Queue a ``kind`` event that carries the summary alone (a creation's) for a tarea nobody is assigned to yet,
    from the summary its statement returned (``SUMMARY_COLUMNS``, typed by the table), without validating a payload
    model only to dump it again (a create's 40 k instructions, 2 %). ``tests/test_tarea_json.py`` holds the stored
    payload equal to ``kind``'s on every shape of tarea."""
    if kind.model_fields.keys() != TareaEvent.model_fields.keys():
        raise TypeError(f"{kind.__name__} carries more than the summary: record it with record_payload")
    _queue(kind.event_type, fields | {"asignados_usuario_ids": []}, fields, actor)


def record_payload(payload: TareaEvent, actor: Usuario | None) -> None:
    """Queue ``payload`` in the current transaction, on the topic of the tarea it is about."""
    data = payload.to_json()
    _queue(payload.event_type, data, data, actor)


def _queue(event_type: str, data: dict[str, Any], tarea: dict[str, Any], actor: Usuario | None) -> None:
    """A tarea event on its tarea's topic; ``tarea`` holds its ``id`` and ``es_emergencia``."""
    topic = "emergencias" if tarea["es_emergencia"] else "tareas"
    events.record_data(db.session(), event_type, data, topic=topic, entity_type="tarea", entity_id=tarea["id"], actor_id=actor.id if actor else None)
