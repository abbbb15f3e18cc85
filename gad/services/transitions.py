"""The tarea state machine: which transitions are allowed, and what each one does to times, history and efectivos.

Allowed moves are ``gad.vocab.TRANSICIONES`` (drawn in docs/ARCHITECTURE.md); who may make them is
``gad.policy.can_transition_tarea``. The tarea row is locked first, so two clients moving the same tarea
are serialised and the second one gets 409/412, never a duplicated history row.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from gad import policy
from gad.errors import Forbidden, InvalidTransition
from gad.extensions import db
from gad.models import HistorialEstado, Tarea, Usuario, utcnow
from gad.schemas.events import TaskStatusChanged
from gad.services import auth
from gad.services.asignaciones import release_all
from gad.services.common import check_version
from gad.services.efectivos import put_to_work
from gad.services.tarea_events import record_tarea_event
from gad.services.tarea_queries import TareaRow, assigned_efectivos, assigned_usuario_ids, lock_tarea, reader_usuario_ids, row_of
from gad.vocab import ESTADOS_EN_MARCHA, ESTADOS_FINALES, MOTIVO_POR_DEFECTO, MOTIVO_REANUDADA, MOTIVOS_AUTOMATICOS, TRANSICIONES, EstadoTarea


def add_history(tarea: Tarea, anterior: str | None, nuevo: str, actor: Usuario | None, motivo: str | None, when: datetime | None = None) -> None:
    """One ``historial_estados`` row per state change (and one for the creation, from None), dated ``when`` it happened
    (default: now)."""
    db.session.add(
        HistorialEstado(
            tarea_id=tarea.id, estado_anterior=anterior, estado_nuevo=nuevo, usuario_id=actor.id if actor else None, motivo=motivo, created_at=when or utcnow()
        )
    )


def transition(
    actor: Usuario,
    tarea_id: int,
    to: EstadoTarea,
    motivo: str | None,
    expected_version: int | None,
    caller: auth.CallerCheck | None = None,
    ocurrido_en: datetime | None = None,
) -> TareaRow:
    """Move a tarea through the state machine in one transaction (timings, history, efectivos, event).
    ``caller``: ``actor`` came from the token cache, and the tarea's lock checks it (``lock_tarea``).
    ``ocurrido_en``: when the change was made, for one a phone kept offline and sent later (``_when``).

    Raises Unauthorized, NotFound, Forbidden, PreconditionFailed, InvalidTransition (409 with the allowed states).
    """
    tarea = lock_tarea(tarea_id, actor, caller)
    _check_may_transition(actor, tarea, to)
    check_version(tarea.version, expected_version, "tarea")
    current = EstadoTarea(tarea.estado)
    _check_allowed(current, to)
    when = _when(tarea, ocurrido_en)
    _apply_timings(tarea, current, to, when)
    tarea.estado = to.value
    tarea.version += 1
    _update_efectivos(tarea, to, actor)
    automatico = MOTIVO_REANUDADA if (current, to) == (EstadoTarea.PAUSADA, EstadoTarea.EN_CURSO) else MOTIVOS_AUTOMATICOS.get(to, MOTIVO_POR_DEFECTO)
    add_history(tarea, current.value, to.value, actor, motivo or automatico, when)
    db.session.flush()
    record_tarea_event(TaskStatusChanged, tarea, actor, {"from": current.value, "to": to.value, "motivo": motivo})
    return row_of(tarea)


# How far back a change sent late may be dated: a shift without coverage, not a phone whose clock was set to last week.
OCURRIDO_MAX_ATRASO = timedelta(hours=24)


def _when(tarea: Tarea, ocurrido_en: datetime | None) -> datetime:
    """The moment a change takes for the tarea's times and history: now, or when a phone says its officer pressed it
    (an action kept offline and sent on coverage: timed at its arrival, a patrol started and finished offline lasted
    the 0.06 s between two requests). A phone's clock is trusted only within bounds: a time ahead of ours is now (a
    fast clock must not block a change), and the moment is never before the tarea's previous change, its first
    assignment or OCURRIDO_MAX_ATRASO ago, so its times, history and response measures stay in order whatever the
    phone's clock says."""
    now = utcnow()
    if ocurrido_en is None or ocurrido_en >= now:
        return now
    previous = db.session.scalar(select(func.max(HistorialEstado.created_at)).where(HistorialEstado.tarea_id == tarea.id))
    floors = (now - OCURRIDO_MAX_ATRASO, tarea.created_at, tarea.primera_asignacion_en, tarea.inicio_real, tarea.pausado_en, previous)
    return max(ocurrido_en, *(moment for moment in floors if moment is not None))


def _check_may_transition(actor: Usuario, tarea: Tarea, to: EstadoTarea) -> None:
    assigned = assigned_usuario_ids(tarea.id)
    if not policy.can_read_tarea(actor, tarea.delegado_usuario_id, assigned):
        if EstadoTarea(tarea.estado) in ESTADOS_FINALES and actor.id in reader_usuario_ids(tarea.id):
            # Ending the tarea released its officers, who still read it: what stops them is its estado, and saying
            # "only tareas assigned to you" to one whose queued action met a cancelled tarea hid why.
            _check_allowed(EstadoTarea(tarea.estado), to)
        raise Forbidden(
            "You may only act on tareas you are assigned to or delegated.", mensaje="Solo puede actuar sobre tareas que tiene asignadas o delegadas."
        )
    if not policy.can_transition_tarea(actor, tarea.delegado_usuario_id, assigned, to):
        raise Forbidden(f"Your nivel may not move a tarea to {to.value}.", mensaje=f"Su nivel no permite pasar una tarea a {to.value.replace('_', ' ')}.")


def _check_allowed(current: EstadoTarea, to: EstadoTarea) -> None:
    allowed = TRANSICIONES[current]
    if to not in allowed:
        raise InvalidTransition(
            f"A tarea in {current.value} cannot move to {to.value}.",
            mensaje=f"Una tarea {current.value.replace('_', ' ')} no puede pasar a {to.value.replace('_', ' ')}.",
            estado_actual=current.value,
            allowed=sorted(state.value for state in allowed),
        )


def _apply_timings(tarea: Tarea, current: EstadoTarea, to: EstadoTarea, now: datetime) -> None:
    """Starting sets inicio_real; pausing stamps pausado_en and resuming adds the pause; ending sets fin_real
    (when the work started) and cerrada_en."""
    if to == EstadoTarea.EN_CURSO and current == EstadoTarea.PROGRAMADA:
        tarea.inicio_real = now
    if to == EstadoTarea.PAUSADA:
        tarea.pausado_en = now
    if current == EstadoTarea.PAUSADA and tarea.pausado_en is not None:
        tarea.tiempo_pausado_s += max(0, int((now - tarea.pausado_en).total_seconds()))
        tarea.pausado_en = None
    if to in ESTADOS_FINALES:
        tarea.fin_real = now if tarea.inicio_real is not None else None
        tarea.cerrada_en = now


def _update_efectivos(tarea: Tarea, to: EstadoTarea, actor: Usuario) -> None:
    """Ending a tarea releases its efectivos; running it (started, paused, resumed) keeps them working
    (``efectivos.put_to_work``: disponible becomes en_tarea, a hand-set state stays)."""
    if to in ESTADOS_FINALES:
        release_all(tarea, actor)
    elif to in ESTADOS_EN_MARCHA:
        put_to_work((efectivo for _, efectivo in assigned_efectivos(tarea, lock=True)), actor)
