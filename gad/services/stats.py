"""Statistics: per-usuario productivity and the command-centre summary (cached, see gad/caching.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select

from gad import policy
from gad.caching import cached, resumen_key, user_stats_key
from gad.errors import Forbidden, NotFound
from gad.extensions import db
from gad.models import Asignacion, Efectivo, Tarea, Usuario, utcnow
from gad.services.efectivos import count_by_disponibilidad
from gad.services.tareas import count_by_estado
from gad.vocab import ESTADOS_ACTIVOS, EstadoTarea, Nivel


def _involving(usuario_id: int) -> Any:
    """Tareas a usuario leads (delegado) or worked on (assigned through their efectivo, at any time)."""
    worked = exists(
        select(Asignacion.id).join(Efectivo, Efectivo.id == Asignacion.efectivo_id).where(Asignacion.tarea_id == Tarea.id, Efectivo.usuario_id == usuario_id)
    )
    return or_(Tarea.delegado_usuario_id == usuario_id, worked)


def _compute_user_stats(usuario_id: int, days: int) -> dict[str, Any]:
    since = utcnow() - timedelta(days=days)
    scope = [Tarea.deleted_at.is_(None), _involving(usuario_id), or_(Tarea.created_at >= since, Tarea.fin_real >= since)]
    totals = {estado.value: 0 for estado in EstadoTarea}
    for estado, count in db.session.execute(select(Tarea.estado, func.count()).where(*scope).group_by(Tarea.estado)):
        totals[estado] = int(count)
    # Real working time: end minus start minus the time spent paused.
    worked_s = func.extract("epoch", Tarea.fin_real - Tarea.inicio_real) - Tarea.tiempo_pausado_s
    finished = [*scope, Tarea.estado == EstadoTarea.FINALIZADA.value, Tarea.fin_real >= since, Tarea.inicio_real.is_not(None)]
    average = db.session.scalar(select(func.avg(worked_s)).where(*finished))
    day = func.date_trunc("day", Tarea.fin_real)
    per_day = [
        {"fecha": when.date().isoformat(), "finalizadas": int(n)}
        for when, n in db.session.execute(select(day, func.count()).where(*finished).group_by(day).order_by(day))
    ]
    total_finished = sum(item["finalizadas"] for item in per_day)
    return {
        "usuario_id": usuario_id,
        "dias": days,
        "totales_por_estado": totals,
        "total": sum(totals.values()),
        "duracion_media_horas": round(float(average) / 3600, 2) if average is not None else None,
        "finalizadas_por_dia": per_day,
        "productividad_diaria": round(total_finished / days, 2),
    }


def user_stats(actor: Usuario, usuario_id: int, days: int) -> dict[str, Any]:
    """Self or supervisor+. Raises Forbidden, NotFound."""
    if not policy.can_read_user_stats(actor, usuario_id):
        raise Forbidden("You may only read your own statistics.")
    if db.session.get(Usuario, usuario_id) is None:
        raise NotFound(f"Usuario {usuario_id} does not exist.")
    return cached(user_stats_key(usuario_id, days), lambda: _compute_user_stats(usuario_id, days))


def _compute_resumen() -> dict[str, Any]:
    active = [Tarea.deleted_at.is_(None), Tarea.es_emergencia.is_(True), Tarea.estado.in_([e.value for e in ESTADOS_ACTIVOS])]
    assigned = exists(select(Asignacion.id).where(Asignacion.tarea_id == Tarea.id, Asignacion.liberado_en.is_(None)))
    return {
        "tareas_por_estado": count_by_estado(),
        "efectivos_por_disponibilidad": count_by_disponibilidad(),
        "emergencias_activas": int(db.session.scalar(select(func.count()).select_from(Tarea).where(*active)) or 0),
        "emergencias_sin_asignar": int(db.session.scalar(select(func.count()).select_from(Tarea).where(*active, ~assigned)) or 0),
        "generado_en": utcnow().isoformat(),
    }


def resumen(actor: Usuario) -> dict[str, Any]:
    """The command-centre summary (supervisor+)."""
    policy.require_nivel(actor, Nivel.SUPERVISOR, "The summary")
    return cached(resumen_key(), _compute_resumen)
