"""Reads shared by the tarea services: statements built once, the row loader, visibility and assignments."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Integer, Select, and_, any_, bindparam, exists, func, inspect, or_, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by

from gad import policy
from gad.db_session import as_uuid, for_update, loaded
from gad.errors import Forbidden, NotFound
from gad.extensions import db
from gad.models import Asignacion, Efectivo, HistorialEstado, Tarea, Usuario
from gad.pg import Prepared
from gad.schemas.tareas import AsignadoOut, TareaOut
from gad.services import auth
from gad.services.json_sql import EMPTY_ARRAY, document
from gad.vocab import ID_MAX

# A tarea's history, oldest first, by when each change happened: an import adds its own row ("Importada de
# GRUPO_GAD") before the older rows it brings, so insertion order is not history's order.
HISTORIAL_ORDER = (HistorialEstado.created_at, HistorialEstado.id)

# Statements built once at import: building and cache-keying them per call cost more than running them.
# A tarea's row as the API knows it: deferred columns (the reports' stored measures) are not part of it.
_LOADED_ATTRIBUTES = tuple(attr for attr in inspect(Tarea).column_attrs if not attr.deferred)
TAREA_COLUMNS = tuple(getattr(Tarea, attr.key) for attr in _LOADED_ATTRIBUTES)
_TAREA_KEYS = tuple(attr.key for attr in _LOADED_ATTRIBUTES)
_BY_ID = select(Tarea).where(Tarea.id == bindparam("tarea_id"), Tarea.deleted_at.is_(None))


def _locked_statement(checked: bool) -> Prepared:
    check = f" AND EXISTS ({auth.CALLER_CHECK_SQL})" if checked else ""
    columns = ", ".join(attr.columns[0].name for attr in _LOADED_ATTRIBUTES)
    sql = f"SELECT {columns} FROM tareas WHERE id = :tarea_id AND deleted_at IS NULL{check} FOR UPDATE"
    return Prepared(text(sql).bindparams(bindparam("tarea_id", type_=Integer)))


# The tarea a write is about to change, locked: prepared, and its row placed in the session as the ORM would have
# loaded it (``db_session.loaded``, as ``tareas.new_tarea`` does): the ORM's select and load of the row cost a
# write more than its round trip (docs/BENCHMARKS.md, thirteenth session).
_LOCKED = {checked: _locked_statement(checked) for checked in (False, True)}


def _locked_tarea(params: dict[str, Any], checked: bool) -> Tarea | None:
    if params["tarea_id"] > ID_MAX:  # no such row; bound as an integer, it would fail as out of range
        return None
    row = _LOCKED[checked].first(db.session().connection(), params)
    if row is None:
        return None
    values = dict(zip(_TAREA_KEYS, row, strict=True))
    values["uuid"] = as_uuid(values["uuid"])
    return loaded(Tarea, values)


_LOCK = auth.CallerCheckedLock(_locked_tarea)
# The tarea, its active assignments and who reads it through an assignment (``_READERS``, for the read
# policy) in one round trip: GET of one tarea is the most frequent request of the service.
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
# The assignment half of the tarea read rule, defined once (docs/ARCHITECTURE.md §4): an efectivo's usuario
# reads a tarea through an assignment that is active, or that the tarea's end released (who worked it to its
# end keeps its history). One taken off a tarea that goes on (unassigned, "no puedo") reads it no more.
# ``readable`` (SQL), ``reader_usuario_ids`` and ``tareas_now`` (the sets ``policy.can_read_tarea`` takes) use it.
READS_THROUGH: ColumnElement[bool] = or_(Asignacion.liberado_en.is_(None), Asignacion.liberada_al_cerrar.is_(True))
_READERS = (
    select(func.coalesce(func.array_agg(Efectivo.usuario_id), text("'{}'::int[]")))
    .select_from(Asignacion)
    .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
    .where(Asignacion.tarea_id == Tarea.id, READS_THROUGH, Efectivo.usuario_id.is_not(None))
    .scalar_subquery()
)
# Plain table columns, not ORM attributes: a read that is only serialised skips the ORM's per-row work.
_TABLE = Tarea.__table__
WITH_ASSIGNED = select(*_TABLE.c, _ASSIGNED_JSON.label("asignados"), _READERS.label("lectores")).where(
    _TABLE.c.id == bindparam("tarea_id"), _TABLE.c.deleted_at.is_(None)
)

_ACTIVE_ASSIGNMENTS = (
    select(Asignacion.tarea_id, Efectivo.id, Efectivo.codigo_interno, Efectivo.nombre, Asignacion.asignado_en)
    .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
    .where(Asignacion.tarea_id == any_(bindparam("tarea_ids", type_=ARRAY(Integer))), Asignacion.liberado_en.is_(None))
    .order_by(Asignacion.asignado_en)
)


# A tarea's active assignments, oldest first, as TareaOut.efectivos (correlated to the tarea outside).
_ASIGNACION_COLUMNS = {
    "efectivo_id": Efectivo.id,
    "codigo_interno": Efectivo.codigo_interno,
    "nombre": Efectivo.nombre,
    "asignado_en": Asignacion.asignado_en,
}


def _efectivos(tarea_id: Any) -> ColumnElement[Any]:
    agg = func.json_agg(aggregate_order_by(document(AsignadoOut, _ASIGNACION_COLUMNS), Asignacion.asignado_en, Asignacion.id))
    return (
        select(func.coalesce(agg, EMPTY_ARRAY))
        .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
        .where(Asignacion.tarea_id == tarea_id, Asignacion.liberado_en.is_(None))
        .scalar_subquery()
    )


def tarea_object(columns: Any, *, unassigned: bool = False) -> ColumnElement[Any]:
    """The TareaOut document of the tarea whose columns (by column name) are ``columns``, built by PostgreSQL
    (``json_sql.document``); ``unassigned``: a tarea known to have nobody assigned (just created), whose
    assignments are not looked up."""
    by_name = {column.key: getattr(columns, column.key) for column in Tarea.__table__.c}
    return document(TareaOut, by_name | {"efectivos": EMPTY_ARRAY if unassigned else _efectivos(by_name["id"])})


READ_FORBIDDEN = "You may only see tareas you are assigned to or delegated."

TareaRow = dict[str, Any]
"""The one shape a tarea leaves the services in, for reads and writes alike: its columns keyed like
``Tarea``'s attributes, plus ``efectivos`` (its active assignments). ``TareaOut`` validates it as is."""


def row_of(tarea: Tarea, efectivos: list[dict[str, Any]] | None = None) -> TareaRow:
    """``tarea`` (just written, in this transaction) as a TareaRow; its assignments are read unless given."""
    if efectivos is None:
        efectivos = asignados_by_tarea([tarea.id]).get(tarea.id, [])
    return {column.key: getattr(tarea, column.key) for column in TAREA_COLUMNS} | {"efectivos": efectivos}


def load_tarea(tarea_id: int) -> Tarea:
    """The live (not soft-deleted) tarea. Raises NotFound."""
    return _found(tarea_id, db.session.scalar(_BY_ID, {"tarea_id": tarea_id}))


def lock_tarea(tarea_id: int, actor: Usuario, caller: auth.CallerCheck | None, decide: Callable[[], None] = lambda: None) -> Tarea:
    """The live tarea, row-locked for a write about to decide on it. ``caller``: ``actor`` came from the token
    cache, and the same statement checks it; ``decide``: the rules that depend on the caller alone, decided first
    (``auth.CallerCheckedLock``). Raises Unauthorized, Forbidden, NotFound."""
    return _found(tarea_id, _LOCK.one({"tarea_id": tarea_id}, caller, actor, decide))


def _found(tarea_id: int, tarea: Tarea | None) -> Tarea:
    if tarea is None:
        raise NotFound(f"Tarea {tarea_id} does not exist.")
    return tarea


def assigned_usuario_ids(tarea_id: int) -> set[int]:
    """Usuarios behind the efectivos actively assigned to a tarea (who may act on it)."""
    return _usuario_ids(_ASSIGNED_USUARIOS, tarea_id)


def reader_usuario_ids(tarea_id: int) -> set[int]:
    """Usuarios who may read a tarea through an assignment (``READS_THROUGH``): for ``policy.can_read_tarea``."""
    return _usuario_ids(_READER_USUARIOS, tarea_id)


def _usuarios_through(which: ColumnElement[bool]) -> Select[tuple[int | None]]:
    return (
        select(Efectivo.usuario_id)
        .join(Asignacion, Asignacion.efectivo_id == Efectivo.id)
        .where(Asignacion.tarea_id == bindparam("tarea_id"), which, Efectivo.usuario_id.is_not(None))
    )


# Built once: every transition, assignment and release reads one of them, some twice.
_ASSIGNED_USUARIOS = _usuarios_through(Asignacion.liberado_en.is_(None))
_READER_USUARIOS = _usuarios_through(READS_THROUGH)


def _usuario_ids(statement: Select[tuple[int | None]], tarea_id: int) -> set[int]:
    return {int(uid) for uid in db.session.scalars(statement, {"tarea_id": tarea_id}) if uid is not None}


def asignados_by_tarea(tarea_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Active assignments of many tareas in one query, for serialisation."""
    if not tarea_ids:
        return {}
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for tarea_id, efectivo_id, codigo, nombre, asignado_en in db.session.execute(_ACTIVE_ASSIGNMENTS, {"tarea_ids": tarea_ids}):
        out[tarea_id].append({"efectivo_id": efectivo_id, "codigo_interno": codigo, "nombre": nombre, "asignado_en": asignado_en})
    return out


_ACTIVE_WITH_EFECTIVOS = (
    select(Asignacion, Efectivo)
    .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
    .where(Asignacion.tarea_id == bindparam("tarea_id"), Asignacion.liberado_en.is_(None))
    .order_by(Efectivo.id)
)
_ACTIVE_WITH_EFECTIVOS_LOCKED = for_update(_ACTIVE_WITH_EFECTIVOS)


def assigned_efectivos(tarea: Tarea, *, lock: bool) -> list[tuple[Asignacion, Efectivo]]:
    """Active assignments of one tarea with their efectivos, in efectivo id order (the lock order)."""
    query = _ACTIVE_WITH_EFECTIVOS_LOCKED if lock else _ACTIVE_WITH_EFECTIVOS
    return [(row[0], row[1]) for row in db.session.execute(query, {"tarea_id": tarea.id})]


def readable(actor_id: Any) -> ColumnElement[bool]:
    """The SQL form of ``policy.can_read_tarea`` for a non-supervisor ``actor_id`` (a value or a bind
    parameter): delegated, assigned (``READS_THROUGH``), or the raiser of an emergency. Correlates to ``Tarea``."""
    assigned = exists(
        select(Asignacion.id)
        .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
        .where(Asignacion.tarea_id == Tarea.id, READS_THROUGH, Efectivo.usuario_id == actor_id)
    )
    raised = and_(Tarea.es_emergencia.is_(True), Tarea.creado_por_usuario_id == actor_id)
    return or_(Tarea.delegado_usuario_id == actor_id, assigned, raised)


def visible_to(query: Select[tuple[Tarea]], actor: Usuario) -> Select[tuple[Tarea]]:
    """Narrow a tarea query to what ``actor`` may read (the SQL form of ``policy.can_read_tarea``)."""
    if policy.is_supervisor(actor):
        return query
    return query.where(readable(bindparam("actor_id", actor.id, type_=Integer)))


def tareas_now(tarea_ids: set[int]) -> dict[int, policy.TareaNow]:
    """The read-relevant facts of many live tareas as they are now (two queries; deleted ones are absent)."""
    if not tarea_ids:
        return {}
    ids = sorted(tarea_ids)
    assigned: dict[int, set[int]] = defaultdict(set)
    rows = db.session.execute(
        select(Asignacion.tarea_id, Efectivo.usuario_id)
        .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
        .where(Asignacion.tarea_id.in_(ids), READS_THROUGH, Efectivo.usuario_id.is_not(None))
    )
    for tarea_id, usuario_id in rows:
        assigned[tarea_id].add(usuario_id)
    facts = db.session.execute(
        select(Tarea.id, Tarea.delegado_usuario_id, Tarea.es_emergencia, Tarea.creado_por_usuario_id).where(Tarea.id.in_(ids), Tarea.deleted_at.is_(None))
    )
    return {
        tarea_id: policy.TareaNow(delegado_id, frozenset(assigned[tarea_id]), policy.reporter_of(es_emergencia, creado_por))
        for tarea_id, delegado_id, es_emergencia, creado_por in facts
    }


def require_readable(actor: Usuario, delegado_usuario_id: int | None, assigned: Callable[[], set[int]], reporter_id: int | None = None) -> None:
    """Raise Forbidden unless ``actor`` may read the tarea; ``assigned`` is only called when it matters."""
    if policy.is_supervisor(actor):  # skip the assignment lookup: supervisors read everything
        return
    if not policy.can_read_tarea(actor, delegado_usuario_id, assigned(), reporter_id):
        raise Forbidden(READ_FORBIDDEN)
