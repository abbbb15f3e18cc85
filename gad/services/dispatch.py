"""Dispatch: nearest efectivos by great-circle distance, and emergencies that are never dropped.

Distances are computed in SQL with the haversine formula on plain PostgreSQL (no PostGIS), after a
bounding-box prefilter that lets the (lat, lon) index discard far-away rows.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import ColumnElement, DateTime, Select, and_, exists, func, literal, or_, select, text

from gad import metrics
from gad.db_session import for_update, on_commit
from gad.errors import ValidationProblem, field_error
from gad.extensions import db
from gad.models import Asignacion, Efectivo, Tarea, Usuario, utcnow
from gad.models.efectivo import en_licencia_at, en_servicio_at
from gad.policy import require_emergency_size, require_nivel
from gad.schemas.events import TaskAssigned
from gad.services import notificaciones, tareas, turnos
from gad.services.efectivos import put_to_work
from gad.services.tarea_events import record_tarea_event
from gad.services.tarea_queries import TareaRow, row_of
from gad.vocab import PREFIJO_EMERGENCIA, Disponibilidad, EstadoTarea, Nivel, TipoTarea

logger = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_008.8


class Cercano(NamedTuple):
    efectivo: Efectivo
    distancia_m: float
    posicion_edad_s: float


def _distance_m(lat: float, lng: float) -> ColumnElement[float]:
    """Haversine distance in metres from (lat, lng) to each efectivo's last position."""
    rlat, rlng = math.radians(lat), math.radians(lng)
    dlat = func.radians(Efectivo.lat) - rlat
    dlng = func.radians(Efectivo.lon) - rlng
    a = func.power(func.sin(dlat / 2), 2) + math.cos(rlat) * func.cos(func.radians(Efectivo.lat)) * func.power(func.sin(dlng / 2), 2)
    # least(1, ...) guards asin against floating-point values a hair above 1.
    return (2 * EARTH_RADIUS_M * func.asin(func.sqrt(func.least(literal(1.0), a)))).label("distancia_m")


def _bounding_box(lat: float, lng: float, radius_m: float) -> ColumnElement[bool]:
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    cos_lat = max(math.cos(math.radians(lat)), 1e-6)
    dlng = min(180.0, math.degrees(radius_m / (EARTH_RADIUS_M * cos_lat)))
    conditions = [Efectivo.lat.between(lat - dlat, lat + dlat)]
    if dlng < 180 and lng - dlng >= -180 and lng + dlng <= 180:
        conditions.append(Efectivo.lon.between(lng - dlng, lng + dlng))
    return and_(*conditions)


def _candidates(lat: float, lng: float, radius_m: float, *, solo_disponibles: bool, max_age_s: int | None, now: datetime) -> Select[Any]:
    distance = _distance_m(lat, lng)
    at = literal(now, DateTime(timezone=True))
    en_servicio = en_servicio_at(Efectivo.id, at)
    # Efectivos on duty (issue 17) come first, nearest first within each group; with
    # DESPACHO_REQUIERE_SERVICIO only they are candidates. A hand-set no_disponible still excludes.
    query = (
        select(Efectivo, distance)
        .where(Efectivo.activo.is_(True), Efectivo.lat.is_not(None), _bounding_box(lat, lng, radius_m), distance <= radius_m)
        .order_by(en_servicio.desc(), distance, Efectivo.id)
    )
    if current_app.config.get("DESPACHO_REQUIERE_SERVICIO"):
        query = query.where(en_servicio)
    if solo_disponibles:
        # Busy now: an unscheduled assignment, or a booked window that is running at this moment (a booking
        # for later in the week does not keep an efectivo from an emergency now); or on licencia now.
        busy = exists(
            select(Asignacion.id).where(
                Asignacion.efectivo_id == Efectivo.id,
                Asignacion.liberado_en.is_(None),
                or_(Asignacion.periodo.is_(None), Asignacion.periodo.op("@>")(at)),
            )
        )
        query = query.where(Efectivo.estado_disponibilidad == Disponibilidad.DISPONIBLE.value, ~busy, ~en_licencia_at(Efectivo.id, at))
    if max_age_s is not None:
        query = query.where(Efectivo.posicion_en >= now - timedelta(seconds=max_age_s))
    return query


def nearest_efectivos(actor: Usuario, lat: float, lng: float, *, radio_m: float, limit: int, solo_disponibles: bool, incluir_antiguas: bool) -> list[Cercano]:
    """Efectivos sorted by distance (supervisor+). Positions older than POSICION_MAX_EDAD_S are left out unless asked for."""
    require_nivel(actor, Nivel.SUPERVISOR, "Searching nearby efectivos")
    now = utcnow()
    max_age = None if incluir_antiguas else int(current_app.config["POSICION_MAX_EDAD_S"])
    rows = db.session.execute(_candidates(lat, lng, radio_m, solo_disponibles=solo_disponibles, max_age_s=max_age, now=now).limit(limit))
    return [Cercano(efectivo, float(distance), _age(efectivo, now)) for efectivo, distance in rows]


def _age(efectivo: Efectivo, now: datetime) -> float:
    return round((now - efectivo.posicion_en).total_seconds(), 1) if efectivo.posicion_en else float("inf")


def _next_emergency_code(now: datetime) -> str:
    """``EMG-<UTC day>-<n>``, n from a database sequence: concurrent emergencies never wait for or collide
    with each other, and no row a user can create blocks the numbering. The prefix is reserved (ordinary
    tareas cannot take it), but a code held by an older or imported row is skipped, never reused."""
    day = now.strftime("%Y%m%d")
    while True:
        number = db.session.scalar(text("SELECT nextval('emergencias_codigo_seq')"))
        codigo = f"{PREFIJO_EMERGENCIA}{day}-{number:04d}"
        if db.session.scalar(select(Tarea.id).where(Tarea.codigo == codigo)) is None:
            return codigo
        logger.warning("emergency code %s is held by another tarea; skipped", codigo)


class EmergencyResult(NamedTuple):
    tarea: TareaRow
    asignados: list[tuple[int, float]]
    motivo_sin_asignar: str | None = None


def raise_emergency(
    actor: Usuario, lat: float | None, lng: float | None, *, descripcion: str | None, tipo: TipoTarea, prioridad: int, efectivos: int
) -> EmergencyResult:
    """Create an en_curso tarea at (lat, lng) and assign the N nearest available efectivos, in one transaction.

    Without a position (an efectivo's SOS from a phone that has no fix) their last known one is used, said in the
    tarea's ubicacion_descripcion, and dispatched from only when fresh; with none known the emergency is raised
    without a location and nobody is dispatched — an officer's SOS is never refused for want of a position: the
    supervisors are told, and can call. Anyone else must say where (``_last_known_position``: 422).

    Any authenticated usuario may raise one; more than ``EMERGENCIA_EFECTIVOS_AGENTE`` efectivos only a
    supervisor (Forbidden). Candidates are locked with ``FOR UPDATE SKIP LOCKED``: two
    emergencies raised at the same instant each take different efectivos instead of waiting for (or
    stealing) the other's. When nobody is available the tarea is still created, unassigned — an
    emergency is never dropped.
    """
    require_emergency_size(actor, efectivos, int(current_app.config["EMERGENCIA_EFECTIVOS_AGENTE"]))
    now = utcnow()
    radius = float(current_app.config["EMERGENCIA_RADIO_M"])
    max_age = int(current_app.config["POSICION_MAX_EDAD_S"])
    ubicacion_descripcion, motivo = None, None
    if lat is None or lng is None:
        lat, lng, ubicacion_descripcion, motivo = _last_known_position(actor, now, max_age)
    codigo = _next_emergency_code(now)
    tarea = tareas.new_tarea(
        actor,
        {
            "codigo": codigo,
            "titulo": f"Emergencia {codigo}",
            "descripcion": descripcion,
            "tipo": tipo,
            "prioridad": prioridad,
            "ubicacion_lat": lat,
            "ubicacion_lng": lng,
            "ubicacion_descripcion": ubicacion_descripcion,
            "inicio_programado": now,
        },
        es_emergencia=True,
        estado=EstadoTarea.EN_CURSO,
    )
    rows = []
    if lat is not None and lng is not None and motivo is None:
        query = _candidates(lat, lng, radius, solo_disponibles=True, max_age_s=max_age, now=now).limit(efectivos)
        # An officer's SOS must not send the officer in trouble to their own emergency.
        query = query.where(or_(Efectivo.usuario_id.is_(None), Efectivo.usuario_id != actor.id))
        rows = list(db.session.execute(for_update(query, of=Efectivo, skip_locked=True)))
    asignados: list[tuple[int, float]] = []
    created: list[tuple[Asignacion, Efectivo]] = []
    for efectivo, distance in rows:
        asignacion = Asignacion(tarea_id=tarea.id, efectivo_id=efectivo.id, asignado_por_usuario_id=actor.id, asignado_en=now)
        db.session.add(asignacion)
        created.append((asignacion, efectivo))
        asignados.append((efectivo.id, round(float(distance), 1)))
    put_to_work((efectivo for _, efectivo in created), actor)
    if asignados:
        tarea.primera_asignacion_en = now  # for response-time reports
    db.session.flush()
    if asignados:
        record_tarea_event(TaskAssigned, tarea, actor, {"efectivo_ids": [e for e, _ in asignados]})
    # Same transaction: the assigned are asked to accept, every supervisor on duty is told.
    notificaciones.notify_assignment(actor.id, tarea, created)
    notificaciones.notify_emergency_supervisors(actor.id, tarea, len(created))
    if not asignados:
        if motivo is None:
            assert lat is not None and lng is not None  # without a motivo yet, a fresh position was searched around
            motivo = why_nobody(lat, lng, radius, max_age, now)
        logger.warning("emergency %s raised with nobody available within %.0f m: %s", codigo, radius, motivo)
        on_commit(metrics.EMERGENCIES_UNASSIGNED.inc)
    return EmergencyResult(row_of(tarea), asignados, motivo)


SIN_POSICION = "No se conoce la posición de quien pide ayuda (su teléfono no la tenía y nunca la envió): llámele para saber dónde está."


def _last_known_position(actor: Usuario, now: datetime, max_age_s: int) -> tuple[float | None, float | None, str | None, str | None]:
    """Where an SOS sent without a position is placed: the caller's efectivo's last reported position, how the tarea
    says where it comes from, and why nobody is sent there when it is older than POSICION_MAX_EDAD_S (a fix of three
    days ago at the station would send help to the station: it is shown, for the central to confirm by phone). Only
    an efectivo's phone may leave the position out: anyone else is asked for it (422)."""
    row = db.session.execute(
        select(Efectivo.codigo_interno, Efectivo.lat, Efectivo.lon, Efectivo.posicion_en).where(Efectivo.usuario_id == actor.id, Efectivo.activo.is_(True))
    ).first()
    if row is None:
        mensaje = "Indique la posición de la emergencia."
        raise ValidationProblem(
            "lat and lng are required: only an efectivo's SOS may leave them out (it is placed at their last known position).",
            errors=[
                field_error("body.lat", "missing", "required unless the caller is an efectivo", es=mensaje),
                field_error("body.lng", "missing", "required unless the caller is an efectivo", es=mensaje),
            ],
        )
    if row.lat is None or row.lon is None or row.posicion_en is None:
        return None, None, None, SIN_POSICION
    minutos = int((now - row.posicion_en).total_seconds() // 60)
    cuando = f"{row.posicion_en.astimezone(turnos.zona()).strftime('%d/%m %H:%M')}, hace {minutos} min"
    descripcion = f"Última posición conocida de {row.codigo_interno} ({cuando}): el teléfono no tenía posición al pedir ayuda."
    if (now - row.posicion_en).total_seconds() > max_age_s:
        return (
            row.lat,
            row.lon,
            descripcion,
            f"La última posición de quien pide ayuda es de hace {minutos} min: no se envía a nadie allí sin confirmarla; llámele.",
        )
    return row.lat, row.lon, descripcion, None


def why_nobody(lat: float, lng: float, radius_m: float, max_age_s: int, now: datetime) -> str:
    """Say, in the operator's words, which rule left an emergency without anybody (the commonest first)."""
    available = (Efectivo.activo.is_(True), Efectivo.estado_disponibilidad == Disponibilidad.DISPONIBLE.value)
    if not db.session.scalar(select(func.count()).select_from(Efectivo).where(*available)):
        return "ningún efectivo está disponible"
    located = db.session.scalar(select(func.count()).select_from(_candidates(lat, lng, radius_m, solo_disponibles=True, max_age_s=None, now=now).subquery()))
    if not located:
        return f"ningún efectivo disponible con posición a menos de {radius_m / 1000:.0f} km"
    return f"ninguna posición en los últimos {max_age_s // 60} min de los efectivos disponibles cercanos"


def assign_next_nearest(actor: Usuario, tarea: Tarea, *, exclude: set[int]) -> Efectivo | None:
    """After a "no puedo" to an emergency: assign the nearest available efectivo not in ``exclude``, by the
    rules of ``raise_emergency`` (radius, position age, ``SKIP LOCKED``), and ask them to accept."""
    if tarea.ubicacion_lat is None or tarea.ubicacion_lon is None:
        return None
    now = utcnow()
    radius = float(current_app.config["EMERGENCIA_RADIO_M"])
    max_age = int(current_app.config["POSICION_MAX_EDAD_S"])
    query = _candidates(tarea.ubicacion_lat, tarea.ubicacion_lon, radius, solo_disponibles=True, max_age_s=max_age, now=now)
    if exclude:
        query = query.where(Efectivo.id.not_in(exclude))
    row = db.session.execute(for_update(query.limit(1), of=Efectivo, skip_locked=True)).first()
    if row is None:
        logger.warning("emergency %s: nobody else available after a decline", tarea.codigo)
        on_commit(metrics.EMERGENCIES_UNASSIGNED.inc)
        return None
    efectivo = row[0]
    asignacion = Asignacion(tarea_id=tarea.id, efectivo_id=efectivo.id, asignado_por_usuario_id=actor.id, asignado_en=now)
    db.session.add(asignacion)
    put_to_work([efectivo], actor)
    tarea.version += 1
    db.session.flush()
    record_tarea_event(TaskAssigned, tarea, actor, {"efectivo_ids": [efectivo.id]})
    notificaciones.notify_assignment(actor.id, tarea, [(asignacion, efectivo)])
    return efectivo
