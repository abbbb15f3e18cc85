"""Tareas: create, list, edit, soft-delete, the state machine, and assignment of efectivos.

Concurrency: every write locks the rows it decides on (``SELECT ... FOR UPDATE``) before checking
versions, states or availability, so two dispatchers acting at once are serialised by PostgreSQL and
the second one sees the first one's result (409/412) instead of overwriting it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Integer, Select, any_, bindparam, exists, func, inspect, or_, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by

from gad import policy
from gad.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationProblem
from gad.extensions import db
from gad.models import Asignacion, Efectivo, HistorialEstado, Tarea, Usuario, utcnow
from gad.realtime import events
from gad.services import notificaciones
from gad.services.common import apply_changes, check_version, count_by, paginate_rows
from gad.vocab import (
    ESTADOS_ACTIVOS,
    ESTADOS_EN_MARCHA,
    ESTADOS_FINALES,
    MOTIVO_POR_DEFECTO,
    MOTIVOS_AUTOMATICOS,
    TRANSICIONES,
    Disponibilidad,
    EstadoTarea,
    Nivel,
)

# API field name -> column name where they differ (the seed's clients say "lng").
_FIELD_COLUMNS = {"ubicacion_lng": "ubicacion_lon"}


def _topic(tarea: Tarea) -> str:
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


def _record(event_type: str, tarea: Tarea, actor: Usuario | None, extra: dict[str, Any] | None = None, assigned: set[int] | None = None) -> None:
    if assigned is None:
        assigned = assigned_usuario_ids(tarea.id)
    payload = tarea_payload(tarea) | {"asignados_usuario_ids": sorted(assigned)} | (extra or {})
    events.record(db.session(), event_type, _topic(tarea), "tarea", tarea.id, actor.id if actor else None, payload)


def assigned_usuario_ids(tarea_id: int) -> set[int]:
    """Usuarios behind the efectivos actively assigned to a tarea (for the read policy)."""
    rows = db.session.scalars(
        select(Efectivo.usuario_id)
        .join(Asignacion, Asignacion.efectivo_id == Efectivo.id)
        .where(Asignacion.tarea_id == tarea_id, Asignacion.liberado_en.is_(None), Efectivo.usuario_id.is_not(None))
    )
    return {int(uid) for uid in rows if uid is not None}


_ACTIVE_ASSIGNMENTS = (
    select(Asignacion.tarea_id, Efectivo.id, Efectivo.codigo_interno, Efectivo.nombre, Asignacion.asignado_en)
    .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
    .where(Asignacion.tarea_id == any_(bindparam("tarea_ids", type_=ARRAY(Integer))), Asignacion.liberado_en.is_(None))
    .order_by(Asignacion.asignado_en)
)


def asignados_by_tarea(tarea_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Active assignments of many tareas in one query, for serialisation."""
    if not tarea_ids:
        return {}
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for tarea_id, efectivo_id, codigo, nombre, asignado_en in db.session.execute(_ACTIVE_ASSIGNMENTS, {"tarea_ids": tarea_ids}):
        out[tarea_id].append({"efectivo_id": efectivo_id, "codigo_interno": codigo, "nombre": nombre, "asignado_en": asignado_en})
    return out


def _visible_to(query: Select[tuple[Tarea]], actor: Usuario) -> Select[tuple[Tarea]]:
    if policy.is_supervisor(actor):
        return query
    assigned = exists(
        select(Asignacion.id)
        .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
        .where(Asignacion.tarea_id == Tarea.id, Asignacion.liberado_en.is_(None), Efectivo.usuario_id == actor.id)
    )
    return query.where(or_(Tarea.delegado_usuario_id == actor.id, assigned))


# Statements built once at import: building and cache-keying them per call cost more than running them.
_TAREA_COLUMNS = tuple(getattr(Tarea, attr.key) for attr in inspect(Tarea).column_attrs)
_BY_ID = select(Tarea).where(Tarea.id == bindparam("tarea_id"), Tarea.deleted_at.is_(None))
_BY_ID_LOCKED = _BY_ID.with_for_update()
# The tarea and its active assignments (with the usuario behind each efectivo, for the read policy) in
# one round trip: GET of one tarea is the most frequent request of the service.
_ASSIGNED_JSON = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_object(
                        "efectivo_id",
                        Efectivo.id,
                        "codigo_interno",
                        Efectivo.codigo_interno,
                        "nombre",
                        Efectivo.nombre,
                        "asignado_en",
                        Asignacion.asignado_en,
                        "usuario_id",
                        Efectivo.usuario_id,
                    ),
                    Asignacion.asignado_en,
                )
            ),
            text("'[]'::json"),
        )
    )
    .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
    .where(Asignacion.tarea_id == Tarea.id, Asignacion.liberado_en.is_(None))
    .scalar_subquery()
)
# Plain table columns, not ORM attributes: a read that is only serialised skips the ORM's per-row work.
_TABLE = Tarea.__table__
_WITH_ASSIGNED = select(*_TABLE.c, _ASSIGNED_JSON.label("asignados")).where(_TABLE.c.id == bindparam("tarea_id"), _TABLE.c.deleted_at.is_(None))


def _load(tarea_id: int, *, lock: bool = False) -> Tarea:
    tarea = db.session.scalar(_BY_ID_LOCKED if lock else _BY_ID, {"tarea_id": tarea_id})
    if tarea is None:
        raise NotFound(f"Tarea {tarea_id} does not exist.")
    return tarea


def _require_readable(actor: Usuario, delegado_usuario_id: int | None, assigned: Callable[[], set[int]]) -> None:
    if policy.is_supervisor(actor):  # skip the assignment lookup: supervisors read everything
        return
    if not policy.can_read_tarea(actor, delegado_usuario_id, assigned()):
        raise Forbidden("You may only see tareas you are assigned to or delegated.")


def _check_readable(actor: Usuario, tarea: Tarea) -> None:
    _require_readable(actor, tarea.delegado_usuario_id, lambda: assigned_usuario_ids(tarea.id))


def _check_delegado(delegado_id: int | None) -> None:
    if delegado_id is None:
        return
    delegado = db.session.get(Usuario, delegado_id)
    if delegado is None or not delegado.activo:
        raise ValidationProblem(
            "Unknown delegado.",
            errors=[{"field": "body.delegado_usuario_id", "message": f"usuario {delegado_id} does not exist or is inactive", "type": "unknown_id"}],
        )


def _check_schedule(inicio: datetime | None, fin: datetime | None) -> None:
    if inicio and fin and fin <= inicio:
        raise ValidationProblem(
            "Schedule is inconsistent.",
            errors=[{"field": "body.fin_programado", "message": "must be after inicio_programado", "type": "schedule"}],
        )


def _add_history(tarea: Tarea, anterior: str | None, nuevo: str, actor: Usuario | None, motivo: str | None) -> None:
    db.session.add(HistorialEstado(tarea_id=tarea.id, estado_anterior=anterior, estado_nuevo=nuevo, usuario_id=actor.id if actor else None, motivo=motivo))


def create_tarea(actor: Usuario, data: dict[str, Any], *, es_emergencia: bool = False, estado: EstadoTarea = EstadoTarea.PROGRAMADA) -> Tarea:
    """Supervisor+ (emergencies are checked by their own service). ``creado_por`` is always ``actor``.

    Raises Forbidden, Conflict (codigo taken), ValidationProblem (unknown delegado, bad schedule).
    """
    if not es_emergencia:
        policy.require_nivel(actor, Nivel.SUPERVISOR, "Creating tareas")
    data = {_FIELD_COLUMNS.get(k, k): v for k, v in data.items()}
    if db.session.scalar(select(Tarea.id).where(Tarea.codigo == data["codigo"])) is not None:
        raise Conflict(f"Codigo {data['codigo']} is already used.", field="codigo")
    _check_delegado(data.get("delegado_usuario_id"))
    data["tipo"] = str(data["tipo"])
    tarea = Tarea(**data, estado=estado.value, es_emergencia=es_emergencia, creado_por_usuario_id=actor.id)
    if estado == EstadoTarea.EN_CURSO:
        tarea.inicio_real = utcnow()
    db.session.add(tarea)
    db.session.flush()
    _add_history(tarea, None, tarea.estado, actor, "Tarea creada")
    _record("emergency_created" if es_emergencia else "task_created", tarea, actor, assigned=set())  # nobody yet
    return tarea


def get_tarea(actor: Usuario, tarea_id: int) -> Tarea:
    tarea = _load(tarea_id)
    _check_readable(actor, tarea)
    return tarea


def read_tarea(actor: Usuario, tarea_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A readable tarea (as a row keyed like Tarea's attributes) and its active assignments, one query."""
    row = db.session.execute(_WITH_ASSIGNED, {"tarea_id": tarea_id}).mappings().first()
    if row is None:
        raise NotFound(f"Tarea {tarea_id} does not exist.")
    tarea = dict(row)
    asignados = tarea.pop("asignados")
    _require_readable(actor, tarea["delegado_usuario_id"], lambda: {a["usuario_id"] for a in asignados if a["usuario_id"] is not None})
    return tarea, asignados


def list_tareas(actor: Usuario, filters: dict[str, Any], limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of tareas as plain rows (keyed like Tarea's attributes): for a page of 100, building ORM
    objects and reading them back attribute by attribute cost more than the query itself."""
    query = _visible_to(select(Tarea).where(Tarea.deleted_at.is_(None)), actor)
    if filters.get("estado"):
        query = query.where(Tarea.estado.in_([str(e) for e in filters["estado"]]))
    if filters.get("tipo"):
        query = query.where(Tarea.tipo.in_([str(t) for t in filters["tipo"]]))
    if filters.get("prioridad_min") is not None:
        query = query.where(Tarea.prioridad >= filters["prioridad_min"])
    if filters.get("prioridad_max") is not None:
        query = query.where(Tarea.prioridad <= filters["prioridad_max"])
    if filters.get("delegado_usuario_id") is not None:
        query = query.where(Tarea.delegado_usuario_id == filters["delegado_usuario_id"])
    if filters.get("efectivo_id") is not None:
        query = query.where(
            exists(
                select(Asignacion.id).where(Asignacion.tarea_id == Tarea.id, Asignacion.efectivo_id == filters["efectivo_id"], Asignacion.liberado_en.is_(None))
            )
        )
    if filters.get("desde") is not None:
        query = query.where(Tarea.inicio_programado >= filters["desde"])
    if filters.get("hasta") is not None:
        query = query.where(Tarea.inicio_programado < filters["hasta"])
    if filters.get("q"):
        like = f"%{filters['q'].strip()}%"
        query = query.where(or_(Tarea.codigo.ilike(like), Tarea.titulo.ilike(like), Tarea.descripcion.ilike(like)))
    sort = filters.get("sort") or "-created_at"
    column = getattr(Tarea, sort.lstrip("-"))
    ordering = column.desc().nulls_last() if sort.startswith("-") else column.asc().nulls_last()
    return paginate_rows(query.order_by(ordering, Tarea.id.desc()).with_only_columns(*_TAREA_COLUMNS), limit, offset)


def update_tarea(actor: Usuario, tarea_id: int, changes: dict[str, Any], expected_version: int | None) -> Tarea:
    """Partial update (supervisor+). ``estado`` is not editable here: use ``transition``.

    Raises NotFound, Forbidden, PreconditionFailed, ValidationProblem.
    """
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Editing tareas")
    tarea = _load(tarea_id, lock=True)
    check_version(tarea.version, expected_version, "tarea")
    changes = {_FIELD_COLUMNS.get(k, k): v for k, v in changes.items()}
    if "delegado_usuario_id" in changes:
        _check_delegado(changes["delegado_usuario_id"])
    _check_schedule(changes.get("inicio_programado", tarea.inicio_programado), changes.get("fin_programado", tarea.fin_programado))
    lat = changes.get("ubicacion_lat", tarea.ubicacion_lat)
    lon = changes.get("ubicacion_lon", tarea.ubicacion_lon)
    if (lat is None) != (lon is None):
        raise ValidationProblem(
            "Location is incomplete.",
            errors=[{"field": "body.ubicacion_lng", "message": "ubicacion_lat and ubicacion_lng go together", "type": "location"}],
        )
    if "tipo" in changes and changes["tipo"] is not None:
        changes["tipo"] = str(changes["tipo"])
    before = {name: _jsonable(getattr(tarea, name)) for name in changes}
    apply_changes(tarea, changes)
    tarea.version += 1
    db.session.flush()
    after = {name: _jsonable(getattr(tarea, name)) for name in changes}
    _record("task_updated", tarea, actor, {"before": before, "after": after})
    return tarea


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def delete_tarea(actor: Usuario, tarea_id: int, expected_version: int | None) -> None:
    """Soft-delete (administradores). Releases any efectivo still assigned."""
    policy.require_nivel(actor, Nivel.ADMINISTRADOR, "Deleting tareas")
    tarea = _load(tarea_id, lock=True)
    check_version(tarea.version, expected_version, "tarea")
    payload_before = tarea_payload(tarea)
    _release_all(tarea, actor)
    tarea.deleted_at = utcnow()
    tarea.version += 1
    db.session.flush()
    events.record(db.session(), "task_deleted", _topic(tarea), "tarea", tarea.id, actor.id, payload_before | {"asignados_usuario_ids": []})


def historial(actor: Usuario, tarea_id: int) -> list[HistorialEstado]:
    tarea = get_tarea(actor, tarea_id)
    return list(db.session.scalars(select(HistorialEstado).where(HistorialEstado.tarea_id == tarea.id).order_by(HistorialEstado.id)))


def _set_disponibilidad(efectivo: Efectivo, estado: Disponibilidad, actor: Usuario | None) -> None:
    if efectivo.estado_disponibilidad == estado.value:
        return
    previous = efectivo.estado_disponibilidad
    efectivo.estado_disponibilidad = estado.value
    efectivo.estado_cambiado_en = utcnow()
    efectivo.version += 1
    events.record(
        db.session(),
        "efectivo_status_changed",
        "efectivos",
        "efectivo",
        efectivo.id,
        actor.id if actor else None,
        {"id": efectivo.id, "usuario_id": efectivo.usuario_id, "codigo_interno": efectivo.codigo_interno, "from": previous, "to": estado.value},
    )


def mark_working(efectivo: Efectivo, actor: Usuario | None) -> None:
    """An efectivo assigned to a running tarea is en_tarea (used by dispatch for emergencies)."""
    _set_disponibilidad(efectivo, Disponibilidad.EN_TAREA, actor)


def _assigned_efectivos(tarea: Tarea, *, lock: bool) -> list[tuple[Asignacion, Efectivo]]:
    query = (
        select(Asignacion, Efectivo)
        .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
        .where(Asignacion.tarea_id == tarea.id, Asignacion.liberado_en.is_(None))
        .order_by(Efectivo.id)
    )
    if lock:
        query = query.with_for_update()
    return [(row[0], row[1]) for row in db.session.execute(query)]


def _release_all(tarea: Tarea, actor: Usuario | None) -> None:
    now = utcnow()
    for asignacion, efectivo in _assigned_efectivos(tarea, lock=True):
        asignacion.liberado_en = now
        if efectivo.estado_disponibilidad == Disponibilidad.EN_TAREA:
            _set_disponibilidad(efectivo, Disponibilidad.DISPONIBLE, actor)


def transition(actor: Usuario, tarea_id: int, to: EstadoTarea, motivo: str | None, expected_version: int | None) -> Tarea:
    """Move a tarea through the state machine in one transaction (timings, history, efectivos, event).

    Raises NotFound, Forbidden, PreconditionFailed, InvalidTransition (409 with the allowed states).
    """
    tarea = _load(tarea_id, lock=True)
    assigned = assigned_usuario_ids(tarea.id)
    if not policy.can_read_tarea(actor, tarea.delegado_usuario_id, assigned):
        raise Forbidden("You may only act on tareas you are assigned to or delegated.")
    if not policy.can_transition_tarea(actor, tarea.delegado_usuario_id, assigned, to):
        raise Forbidden(f"Your nivel may not move a tarea to {to.value}.")
    check_version(tarea.version, expected_version, "tarea")
    current = EstadoTarea(tarea.estado)
    allowed = TRANSICIONES[current]
    if to not in allowed:
        raise InvalidTransition(
            f"A tarea in {current.value} cannot move to {to.value}.",
            estado_actual=current.value,
            allowed=sorted(state.value for state in allowed),
        )
    now = utcnow()
    if to == EstadoTarea.EN_CURSO and current == EstadoTarea.PROGRAMADA:
        tarea.inicio_real = now
    if to == EstadoTarea.PAUSADA:
        tarea.pausado_en = now
    if current == EstadoTarea.PAUSADA and tarea.pausado_en is not None:
        tarea.tiempo_pausado_s += max(0, int((now - tarea.pausado_en).total_seconds()))
        tarea.pausado_en = None
    if to in ESTADOS_FINALES:
        tarea.fin_real = now if tarea.inicio_real is not None else None
    tarea.estado = to.value
    tarea.version += 1
    if to in ESTADOS_FINALES:
        _release_all(tarea, actor)
    elif to in ESTADOS_EN_MARCHA:
        for _, efectivo in _assigned_efectivos(tarea, lock=True):
            _set_disponibilidad(efectivo, Disponibilidad.EN_TAREA, actor)
    _add_history(tarea, current.value, to.value, actor, motivo or MOTIVOS_AUTOMATICOS.get(to, MOTIVO_POR_DEFECTO))
    db.session.flush()
    _record("task_status_changed", tarea, actor, {"from": current.value, "to": to.value, "motivo": motivo})
    return tarea


def assign(actor: Usuario, tarea_id: int, efectivo_ids: list[int], expected_version: int | None) -> Tarea:
    """Assign efectivos (supervisor+). Each must be active, disponible and hold no other active assignment.

    Efectivo rows are locked in id order (no deadlock between two dispatchers); the partial unique index
    on active assignments is the last line of defence. Raises NotFound, Forbidden, PreconditionFailed,
    Conflict (naming the efectivo and the tarea holding them), ValidationProblem.
    """
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Assigning efectivos")
    tarea = _load(tarea_id, lock=True)
    check_version(tarea.version, expected_version, "tarea")
    if EstadoTarea(tarea.estado) not in ESTADOS_ACTIVOS:
        raise Conflict(f"Tarea {tarea.codigo} is {tarea.estado}; only active tareas take efectivos.")
    ids = sorted(set(efectivo_ids))
    efectivos = list(db.session.scalars(select(Efectivo).where(Efectivo.id.in_(ids)).order_by(Efectivo.id).with_for_update()))
    missing = set(ids) - {e.id for e in efectivos}
    if missing:
        raise ValidationProblem(
            "Unknown efectivos.",
            errors=[{"field": "body.efectivo_ids", "message": f"efectivo {i} does not exist", "type": "unknown_id"} for i in sorted(missing)],
        )
    running = EstadoTarea(tarea.estado) in ESTADOS_EN_MARCHA
    now = utcnow()
    created: list[tuple[Asignacion, Efectivo]] = []
    for efectivo in efectivos:
        holding = db.session.execute(
            select(Asignacion.tarea_id, Tarea.codigo)
            .join(Tarea, Tarea.id == Asignacion.tarea_id)
            .where(Asignacion.efectivo_id == efectivo.id, Asignacion.liberado_en.is_(None))
        ).first()
        if holding is not None:
            raise Conflict(
                f"Efectivo {efectivo.codigo_interno} is already assigned to tarea {holding.codigo}.",
                efectivo_id=efectivo.id,
                tarea_id=holding.tarea_id,
            )
        if not efectivo.activo or efectivo.estado_disponibilidad != Disponibilidad.DISPONIBLE:
            raise Conflict(
                f"Efectivo {efectivo.codigo_interno} is not available ({efectivo.estado_disponibilidad}).",
                efectivo_id=efectivo.id,
                estado_disponibilidad=efectivo.estado_disponibilidad,
            )
        asignacion = Asignacion(tarea_id=tarea.id, efectivo_id=efectivo.id, asignado_por_usuario_id=actor.id, asignado_en=now)
        db.session.add(asignacion)
        created.append((asignacion, efectivo))
        if running:
            _set_disponibilidad(efectivo, Disponibilidad.EN_TAREA, actor)
    tarea.version += 1
    db.session.flush()
    _record("task_assigned", tarea, actor, {"efectivo_ids": ids})
    # Same transaction: an assignment that commits has told its efectivo, one that rolls back told nobody.
    notificaciones.notify_assignment(actor.id, tarea, created)
    return tarea


def release_assignment(actor: Usuario, tarea: Tarea, asignacion: Asignacion, efectivo: Efectivo, *, motivo: str) -> None:
    """Release one assignment the caller has locked (an efectivo's "no puedo"); the efectivo gets back the
    availability it had before (assigning requires disponible), and clients see ``task_unassigned``."""
    asignacion.liberado_en = utcnow()
    if efectivo.estado_disponibilidad == Disponibilidad.EN_TAREA:
        _set_disponibilidad(efectivo, Disponibilidad.DISPONIBLE, actor)
    tarea.version += 1
    db.session.flush()
    _record("task_unassigned", tarea, actor, {"efectivo_ids": [efectivo.id], "motivo": motivo})


def unassign(actor: Usuario, tarea_id: int, efectivo_id: int, expected_version: int | None) -> Tarea:
    """Release one efectivo from a tarea (supervisor+); they become disponible again if they were working it."""
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Unassigning efectivos")
    tarea = _load(tarea_id, lock=True)
    check_version(tarea.version, expected_version, "tarea")
    row = db.session.execute(
        select(Asignacion, Efectivo)
        .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
        .where(Asignacion.tarea_id == tarea.id, Asignacion.efectivo_id == efectivo_id, Asignacion.liberado_en.is_(None))
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"Efectivo {efectivo_id} is not assigned to tarea {tarea.codigo}.")
    asignacion, efectivo = row
    asignacion.liberado_en = utcnow()
    if efectivo.estado_disponibilidad == Disponibilidad.EN_TAREA:
        _set_disponibilidad(efectivo, Disponibilidad.DISPONIBLE, actor)
    tarea.version += 1
    db.session.flush()
    _record("task_unassigned", tarea, actor, {"efectivo_ids": [efectivo_id]})
    return tarea


def count_by_estado() -> dict[str, int]:
    return count_by(Tarea.estado, (e.value for e in EstadoTarea), Tarea.deleted_at.is_(None))
