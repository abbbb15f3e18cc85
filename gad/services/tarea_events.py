"""The events a tarea change writes to the log: one payload shape for every tarea event."""

from __future__ import annotations

from typing import Any, TypeVar

from gad.extensions import db
from gad.models import Tarea, Usuario
from gad.realtime import events
from gad.schemas.events import TareaEvent
from gad.services.tarea_queries import reader_usuario_ids

E = TypeVar("E", bound=TareaEvent)


def topic_of(tarea: Tarea) -> str:
    return "emergencias" if tarea.es_emergencia else "tareas"


def tarea_fields(tarea: Tarea) -> dict[str, Any]:
    """The summary of a tarea every tarea event carries (``gad.schemas.events.TareaEvent``)."""
    return {
        "id": tarea.id,
        "codigo": tarea.codigo,
        "titulo": tarea.titulo,
        "tipo": tarea.tipo,
        "prioridad": tarea.prioridad,
        "estado": tarea.estado,
        "es_emergencia": tarea.es_emergencia,
        "delegado_usuario_id": tarea.delegado_usuario_id,
        "creado_por_usuario_id": tarea.creado_por_usuario_id,
        "ubicacion_lat": tarea.ubicacion_lat,
        "ubicacion_lng": tarea.ubicacion_lon,
        "version": tarea.version,
    }


def tarea_event(kind: type[E], tarea: Tarea, extra: dict[str, Any] | None = None, assigned: set[int] | None = None) -> E:
    """A ``kind`` payload for ``tarea`` as it is now, with who reads it through an assignment now (the
    websocket read policy needs it: the efectivos of an ended tarea see its closing, as REST shows it them).

    Raises pydantic's ValidationError if ``extra`` does not fit ``kind``: a writer cannot drift from the schema.
    """
    if assigned is None:
        assigned = reader_usuario_ids(tarea.id)
    return kind.model_validate(tarea_fields(tarea) | {"asignados_usuario_ids": sorted(assigned)} | (extra or {}))


def record_tarea_event(
    kind: type[TareaEvent], tarea: Tarea, actor: Usuario | None, extra: dict[str, Any] | None = None, assigned: set[int] | None = None
) -> None:
    """Queue a ``kind`` event for ``tarea`` in the current transaction (see ``tarea_event``)."""
    record_payload(tarea_event(kind, tarea, extra, assigned), tarea, actor)


def record_payload(payload: TareaEvent, tarea: Tarea, actor: Usuario | None) -> None:
    events.record(db.session(), payload, topic=topic_of(tarea), entity_type="tarea", entity_id=tarea.id, actor_id=actor.id if actor else None)
