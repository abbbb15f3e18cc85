"""Assignment of efectivos to tareas: the only source of truth for who works what, and its availability effects.

Concurrency: the tarea row and then the efectivo rows (in id order, so two dispatchers never deadlock)
are locked before anything is checked; the partial unique index on active assignments is the last
line of defence.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import DateTime, literal, or_, select

from gad import policy
from gad.db_session import for_update
from gad.errors import Conflict, NotFound, ValidationProblem, field_error
from gad.extensions import db
from gad.models import Asignacion, Efectivo, Tarea, Usuario, utcnow
from gad.models.efectivo import en_licencia_at
from gad.schemas.events import TaskAssigned, TaskUnassigned
from gad.services import auth, notificaciones, turnos
from gad.services.common import check_version
from gad.services.efectivos import put_to_work, settle_after_release
from gad.services.tarea_events import record_tarea_event
from gad.services.tarea_queries import TareaRow, assigned_efectivos, lock_tarea, row_of
from gad.vocab import ESTADOS_ACTIVOS, ESTADOS_EN_MARCHA, Disponibilidad, EstadoTarea, Nivel


class HoldingRow(NamedTuple):
    """The assignment already holding an efectivo: its tarea."""

    tarea_id: int
    codigo: str


def assign(actor: Usuario, tarea_id: int, efectivo_ids: list[int], expected_version: int | None, caller: auth.CallerCheck | None = None) -> TareaRow:
    """Assign efectivos (supervisor+). Each must be active and disponible, and free for the tarea:

    - a tarea with a scheduled window books it (issue 17): refused when the window overlaps another
      booking of the efectivo or a licencia; outside its turnos it is flagged ``fuera_de_turno`` (or
      refused with DESPACHO_REQUIERE_SERVICIO);
    - a tarea without a window takes the efectivo open-ended from now: refused while they hold another one
      or a licencia covers now.

    Efectivo rows are locked in id order (no deadlock between two dispatchers); the exclusion
    constraint on booked windows and the partial unique index on unscheduled assignments are the last
    line of defence. ``caller``: ``actor`` came from the token cache, and the tarea's lock checks it
    (``lock_tarea``). Raises Unauthorized, NotFound, Forbidden, PreconditionFailed, Conflict (naming the
    efectivo and the tarea holding them), ValidationProblem.
    """
    tarea = lock_tarea(tarea_id, actor, caller, partial(policy.require_nivel, actor, Nivel.SUPERVISOR, "Assigning efectivos"))
    check_version(tarea.version, expected_version, "tarea")
    if EstadoTarea(tarea.estado) not in ESTADOS_ACTIVOS:
        raise Conflict(
            f"Tarea {tarea.codigo} is {tarea.estado}; only active tareas take efectivos.",
            mensaje=f"La tarea {tarea.codigo} está {tarea.estado.replace('_', ' ')}: solo se asigna a tareas abiertas.",
        )
    ids = sorted(set(efectivo_ids))
    efectivos = list(db.session.scalars(for_update(select(Efectivo).where(Efectivo.id.in_(ids)).order_by(Efectivo.id))))
    missing = set(ids) - {e.id for e in efectivos}
    if missing:
        raise ValidationProblem(
            "Unknown efectivos.",
            errors=[field_error("body.efectivo_ids", "unknown_id", f"efectivo {i} does not exist", es=f"El efectivo {i} no existe.") for i in sorted(missing)],
        )
    running = EstadoTarea(tarea.estado) in ESTADOS_EN_MARCHA
    now = utcnow()
    window = turnos.ventana(tarea)
    fuera_de_turno: list[int] = []
    created: list[tuple[Asignacion, Efectivo]] = []
    for efectivo in efectivos:
        # Already on this tarea, or (for an unscheduled tarea) holding another unscheduled one.
        same_or_open = Asignacion.tarea_id == tarea.id if window is not None else or_(Asignacion.tarea_id == tarea.id, Asignacion.periodo.is_(None))

        def holding_one(column: Any, efectivo_id: int = efectivo.id, same_or_open: Any = same_or_open) -> Any:
            return (
                select(column)
                .select_from(Asignacion)
                .join(Tarea, Tarea.id == Asignacion.tarea_id)
                .where(Asignacion.efectivo_id == efectivo_id, Asignacion.liberado_en.is_(None), same_or_open)
                .limit(1)
                .scalar_subquery()
            )

        # One statement, run after the efectivo's row lock was granted (so it sees a licencia committed while it
        # waited): the assignment holding them, and whether a licencia covers now.
        checked = db.session.execute(
            select(holding_one(Asignacion.tarea_id), holding_one(Tarea.codigo), en_licencia_at(efectivo.id, literal(now, DateTime(timezone=True))))
        ).one()
        holding = HoldingRow(checked[0], checked[1]) if checked[0] is not None else None
        on_leave = bool(checked[2])
        if holding is not None:
            raise Conflict(
                f"Efectivo {efectivo.codigo_interno} is already assigned to tarea {holding.codigo}.",
                mensaje=f"{efectivo.codigo_interno} ya está asignado a la tarea {holding.codigo}.",
                efectivo_id=efectivo.id,
                tarea_id=holding.tarea_id,
            )
        if not efectivo.activo or efectivo.estado_disponibilidad != Disponibilidad.DISPONIBLE:
            raise Conflict(
                f"Efectivo {efectivo.codigo_interno} is not available ({efectivo.estado_disponibilidad}).",
                mensaje=f"{efectivo.codigo_interno} no está disponible ({efectivo.estado_disponibilidad.replace('_', ' ')}).",
                efectivo_id=efectivo.id,
                estado_disponibilidad=efectivo.estado_disponibilidad,
            )
        if window is None and on_leave:
            # A booked window is checked against licencias by check_booking and the database; an open-ended
            # assignment starts now, and leave is not negotiable.
            raise Conflict(
                f"Efectivo {efectivo.codigo_interno} is on licencia now.", mensaje=f"{efectivo.codigo_interno} está de licencia.", efectivo_id=efectivo.id
            )
        fuera = turnos.check_booking(efectivo, tarea, window) if window is not None else False
        if fuera:
            fuera_de_turno.append(efectivo.id)
        with turnos.refused_as_conflict(f"Efectivo {efectivo.codigo_interno}'s booking", lambda e=efectivo.id: turnos.booking_recheck(e, tarea.id, window)):
            asignacion = Asignacion(
                tarea_id=tarea.id,
                efectivo_id=efectivo.id,
                asignado_por_usuario_id=actor.id,
                asignado_en=now,
                periodo=window,
                fuera_de_turno=fuera,
            )
            db.session.add(asignacion)
        created.append((asignacion, efectivo))
    if running:
        put_to_work((efectivo for _, efectivo in created), actor)
    if tarea.primera_asignacion_en is None:
        tarea.primera_asignacion_en = now  # response-time reports read it without scanning asignaciones
    tarea.version += 1
    db.session.flush()
    record_tarea_event(TaskAssigned, tarea, actor, {"efectivo_ids": ids, "fuera_de_turno": fuera_de_turno})
    # Same transaction: an assignment that commits has asked its efectivos to accept; one that rolls back, nobody.
    notificaciones.notify_assignment(actor.id, tarea, created)
    return row_of(tarea)


def unassign(actor: Usuario, tarea_id: int, efectivo_id: int, expected_version: int | None, caller: auth.CallerCheck | None = None) -> TareaRow:
    """Release one efectivo from a tarea (supervisor+); they become disponible again unless another running
    tarea still holds them (``efectivos.settle_after_release``), and their usuario is told (a ``desasignacion``
    notification: the tarea's own events stop reaching someone who may no longer read it). ``caller``: as
    ``assign``'s."""
    tarea = lock_tarea(tarea_id, actor, caller, partial(policy.require_nivel, actor, Nivel.SUPERVISOR, "Unassigning efectivos"))
    check_version(tarea.version, expected_version, "tarea")
    row = db.session.execute(
        # The efectivo's usuario comes in the same statement (unlocked): the notification names its recipient.
        for_update(
            select(Asignacion, Efectivo, Usuario)
            .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
            .outerjoin(Usuario, Usuario.id == Efectivo.usuario_id)
            .where(Asignacion.tarea_id == tarea.id, Asignacion.efectivo_id == efectivo_id, Asignacion.liberado_en.is_(None)),
            of=(Asignacion, Efectivo),
        )
    ).first()
    if row is None:
        raise NotFound(f"Efectivo {efectivo_id} is not assigned to tarea {tarea.codigo}.")
    asignacion, efectivo, _ = row
    release_assignment(actor, tarea, asignacion, efectivo)
    # Same transaction: a release that commits has told the efectivo; one that rolls back, nobody. A "no puedo"
    # (gad.services.respuestas) releases too, but the efectivo asked for it: nothing to tell them.
    notificaciones.notify_release(actor.id, tarea, asignacion, efectivo)
    return row_of(tarea)


def release_assignment(actor: Usuario, tarea: Tarea, asignacion: Asignacion, efectivo: Efectivo, *, motivo: str | None = None) -> None:
    """End one assignment whose tarea, assignment and efectivo rows the caller has locked (unassigning, or the
    efectivo's "no puedo"): en_tarea becomes disponible unless another running tarea still holds them, and a
    hand-set state stays (``efectivos.settle_after_release``)."""
    asignacion.liberado_en = utcnow()
    db.session.flush()  # the release is what the rule reads
    settle_after_release([efectivo], actor)
    tarea.version += 1
    db.session.flush()
    record_tarea_event(TaskUnassigned, tarea, actor, {"efectivo_ids": [efectivo.id]} | ({"motivo": motivo} if motivo else {}))


def release_all(tarea: Tarea, actor: Usuario | None) -> None:
    """End every active assignment of ``tarea`` because the tarea ended (finished, cancelled or deleted):
    efectivos working it become disponible unless another running tarea still holds them
    (``efectivos.settle_after_release``), and may still read it (``READS_THROUGH``)."""
    now = utcnow()
    released = assigned_efectivos(tarea, lock=True)
    for asignacion, _ in released:
        asignacion.liberado_en = now
        asignacion.liberada_al_cerrar = True
    db.session.flush()  # the releases are what the rule reads
    settle_after_release((efectivo for _, efectivo in released), actor)
