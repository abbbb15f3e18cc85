"""What a "no puedo" does to dispatch: release that assignment, tell who leads, and re-dispatch an emergency.

Runs inside the answer's transaction (gad.services.notificaciones.ack), after the notification, the
tarea and the assignment rows were locked in that order.
"""

from __future__ import annotations

from sqlalchemy import select

from gad.db_session import for_update
from gad.extensions import db
from gad.models import Asignacion, Efectivo, Notificacion, Tarea, Usuario
from gad.services import asignaciones, dispatch, notificaciones
from gad.vocab import ESTADOS_ACTIVOS, CausaNotificacion, EstadoTarea


def decline_assignment(actor: Usuario, n: Notificacion, asignacion: Asignacion) -> None:
    """Release the declined assignment (the efectivo gets its previous availability back), notify the
    tarea's delegado and the supervisors on duty, and for an active emergency assign the next nearest
    available efectivo who has not declined it (the emergency dispatch rules)."""
    tarea = db.session.get(Tarea, asignacion.tarea_id)
    efectivo = db.session.scalar(for_update(select(Efectivo).where(Efectivo.id == asignacion.efectivo_id)))
    assert tarea is not None and efectivo is not None
    asignaciones.release_assignment(actor, tarea, asignacion, efectivo, motivo="no_puedo")
    recipients = [uid for uid in [tarea.delegado_usuario_id, *notificaciones.supervisores_de_guardia()] if uid is not None and uid != actor.id]
    motivo = f": {n.motivo}" if n.motivo else ""
    notificaciones.notify(
        recipients,
        causa=CausaNotificacion.RECHAZO,
        titulo=f"No puede: {efectivo.codigo_interno} en {tarea.codigo}",
        texto=f"{efectivo.nombre} respondió «no puedo» a {tarea.codigo}{motivo}.",
        prioridad=tarea.prioridad,
        actor_id=actor.id,
        tarea_id=tarea.id,
        efectivo_id=efectivo.id,
        origen_id=n.id,
    )
    if tarea.es_emergencia and EstadoTarea(tarea.estado) in ESTADOS_ACTIVOS:
        declined = set(
            db.session.scalars(
                select(Notificacion.efectivo_id).where(
                    Notificacion.tarea_id == tarea.id, Notificacion.respuesta == "no_puedo", Notificacion.efectivo_id.is_not(None)
                )
            )
        )
        dispatch.assign_next_nearest(actor, tarea, exclude={e for e in declined if e is not None} | {efectivo.id})
