"""The events a tarea change writes to the log: one payload shape for every tarea event."""

from __future__ import annotations

from typing import Any

from gad.extensions import db
from gad.models import Tarea, Usuario
from gad.realtime import events
from gad.services.tarea_queries import assigned_usuario_ids


def topic_of(tarea: Tarea) -> str:
    return "emergencias" if tarea.es_emergencia else "tareas"


def tarea_payload(tarea: Tarea) -> dict[str, Any]:
    return {
        "id": tarea.id,
        "codigo": tarea.codigo,
        "titulo": tarea.titulo,
        "tipo": tarea.tipo,
        "prioridad": tarea.prioridad,
        "estado": tarea.estado,
        "es_emergencia": tarea.es_emergencia,
        "delegado_usuario_id": tarea.delegado_usuario_id,
        "ubicacion_lat": tarea.ubicacion_lat,
        "ubicacion_lng": tarea.ubicacion_lon,
        "version": tarea.version,
    }


def record_tarea_event(event_type: str, tarea: Tarea, actor: Usuario | None, extra: dict[str, Any] | None = None, assigned: set[int] | None = None) -> None:
    """Queue ``event_type`` for ``tarea`` with who is assigned now (the websocket read policy needs it)."""
    if assigned is None:
        assigned = assigned_usuario_ids(tarea.id)
    payload = tarea_payload(tarea) | {"asignados_usuario_ids": sorted(assigned)} | (extra or {})
    events.record(db.session(), event_type, topic_of(tarea), "tarea", tarea.id, actor.id if actor else None, payload)
