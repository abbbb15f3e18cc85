"""Efectivos: registry, availability and position reports."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, DateTime, Float, Integer, Select, String, any_, bindparam, func, select, text
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from gad import policy
from gad.db_session import for_update, read_row
from gad.errors import Conflict, Forbidden, NotFound, ValidationProblem, field_error
from gad.extensions import db
from gad.models import Asignacion, Efectivo, Tarea, Usuario, utcnow
from gad.models.efectivo import en_servicio_at
from gad.pg import Prepared, PreparedShapes
from gad.realtime import events
from gad.schemas.efectivos import EfectivoOut
from gad.schemas.events import EfectivoCreated, EfectivoEvent, EfectivoLocationUpdate, EfectivoStatusChanged, EfectivoUpdated
from gad.services import auth, json_sql
from gad.services.common import apply_changes, changes_nothing, check_version, count_by, found_in, paginate
from gad.text import search_regex
from gad.vocab import ESTADOS_EN_MARCHA, ID_MAX, Disponibilidad, Nivel


def efectivo_payload(efectivo: Efectivo) -> dict[str, Any]:
    return {
        "id": efectivo.id,
        "usuario_id": efectivo.usuario_id,
        "codigo_interno": efectivo.codigo_interno,
        "nombre": efectivo.nombre,
        "unidad": efectivo.unidad,
        "estado_disponibilidad": efectivo.estado_disponibilidad,
        "lat": efectivo.lat,
        "lng": efectivo.lon,
        "posicion_en": efectivo.posicion_en.isoformat() if efectivo.posicion_en else None,
    }


def _record(kind: type[EfectivoEvent], efectivo: Efectivo, actor: Usuario | None, extra: dict[str, Any] | None = None) -> None:
    """Queue a ``kind`` event (``gad.schemas.events``) with the efectivo as it is now; ``extra`` must fit ``kind``."""
    payload = kind.model_validate(efectivo_payload(efectivo) | (extra or {}))
    events.record(db.session(), payload, topic="efectivos", entity_type="efectivo", entity_id=efectivo.id, actor_id=actor.id if actor else None)


_LOCK = auth.CallerCheckedLock.of_query(for_update(select(Efectivo).where(Efectivo.id == bindparam("efectivo_id"))))


def _lock(efectivo_id: int, caller: auth.CallerCheck | None = None, actor: Usuario | None = None, decide: Callable[[], None] = lambda: None) -> Efectivo:
    """The efectivo, locked for the transaction. ``caller``: ``actor`` came from the token cache, and the same
    statement checks it; ``decide``: the rules that depend on the caller alone, decided first
    (``auth.CallerCheckedLock``). No row means an unknown efectivo or a caller who no longer holds, and the
    caller is read to tell which (Unauthorized)."""
    efectivo = _LOCK.one({"efectivo_id": efectivo_id}, caller, actor, decide)
    if efectivo is None:
        raise NotFound(f"Efectivo {efectivo_id} does not exist.")
    return efectivo


def _check_usuario_link(usuario_id: int | None, exclude_id: int | None = None) -> None:
    """A new link goes to an active usuario only: a deactivated one cannot log in to answer the efectivo's
    assignments. A link made before the usuario was deactivated stays (the caller checks only a changed link)."""
    if usuario_id is None:
        return
    usuario = db.session.get(Usuario, usuario_id)
    if usuario is None or not usuario.activo:
        raise ValidationProblem(
            "Unknown usuario.",
            errors=[
                field_error(
                    "body.usuario_id",
                    "unknown_id",
                    f"usuario {usuario_id} does not exist or is inactive",
                    es=f"El usuario {usuario_id} no existe o no está activo.",
                )
            ],
        )
    query = select(Efectivo.id).where(Efectivo.usuario_id == usuario_id)
    if exclude_id is not None:
        query = query.where(Efectivo.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise Conflict("That usuario is already linked to another efectivo.", mensaje="Ese usuario ya está vinculado a otro efectivo.", field="usuario_id")


def efectivo_id_of(usuario_id: int) -> int | None:
    """The id of the efectivo linked to the usuario, if any."""
    return db.session.scalar(select(Efectivo.id).where(Efectivo.usuario_id == usuario_id))


def _check_codigo(codigo: str | None, exclude_id: int | None = None) -> None:
    if codigo is None:
        return
    query = select(Efectivo.id).where(Efectivo.codigo_interno == codigo)
    if exclude_id is not None:
        query = query.where(Efectivo.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise Conflict(
            f"An efectivo with codigo_interno {codigo} already exists.", mensaje=f"Ya hay un efectivo con el código {codigo}.", field="codigo_interno"
        )


def create_efectivo(actor: Usuario | None, data: dict[str, Any]) -> Efectivo:
    """Supervisor+ (``actor`` None means the CLI). Raises Forbidden, Conflict, ValidationProblem."""
    if actor is not None:
        policy.require_nivel(actor, Nivel.SUPERVISOR, "Creating efectivos")
    if data.get("estado_disponibilidad") == Disponibilidad.EN_TAREA:
        raise ValidationProblem(
            "en_tarea is set by assignment.",
            errors=[{"field": "body.estado_disponibilidad", "message": "en_tarea is set by assigning a running tarea", "type": "managed_state"}],
        )
    _check_codigo(data["codigo_interno"])
    _check_usuario_link(data.get("usuario_id"))
    efectivo = Efectivo(**{**data, "estado_disponibilidad": str(data.get("estado_disponibilidad") or Disponibilidad.DISPONIBLE)})
    db.session.add(efectivo)
    db.session.flush()
    _record(EfectivoCreated, efectivo, actor)
    return efectivo


def get_efectivo(actor: Usuario, efectivo_id: int) -> Efectivo:
    efectivo = db.session.get(Efectivo, efectivo_id)
    if efectivo is None:
        raise NotFound(f"Efectivo {efectivo_id} does not exist.")
    if not policy.can_read_efectivo(actor, efectivo.usuario_id):
        raise Forbidden("You may only read your own efectivo.")
    return efectivo


def _filter_values(estados: Sequence[str] | None, unidad: str | None, especialidad: str | None, q: str | None) -> dict[str, Any]:
    """The values of the filters that are present, by the name of the bind parameter each becomes."""
    values: dict[str, Any] = {}
    if estados:
        values["estados"] = [str(e) for e in estados]
    if unidad:
        values["unidad"] = unidad
    if especialidad:
        values["especialidad"] = especialidad
    if q:
        values["q"] = search_regex(q)
    return values


def _matching(actor: Usuario, values: dict[str, Any], activo: bool | None, en_servicio: bool | None) -> Select[tuple[Efectivo]]:
    """The efectivos ``actor`` may list that match the filters, in list order (id). Every value is a named
    bind parameter (``_filter_values``, ``actor_id``): the same filters present give the same SQL."""

    def bound(name: str, type_: Any) -> Any:
        return bindparam(name, values[name], type_=type_)

    query: Select[tuple[Efectivo]] = select(Efectivo)
    if not policy.is_supervisor(actor):
        query = query.where(Efectivo.usuario_id == bindparam("actor_id", actor.id, type_=Integer))
    if "estados" in values:
        query = query.where(Efectivo.estado_disponibilidad == any_(bound("estados", ARRAY(String))))
    if "unidad" in values:
        query = query.where(Efectivo.unidad == bound("unidad", String))
    if "especialidad" in values:
        query = query.where(Efectivo.especialidad == bound("especialidad", String))
    if activo is not None:
        query = query.where(Efectivo.activo.is_(activo))
    if en_servicio is not None:
        query = query.where(Efectivo.en_servicio if en_servicio else ~Efectivo.en_servicio)
    if "q" in values:
        query = query.where(found_in((Efectivo.nombre, Efectivo.codigo_interno, Efectivo.unidad, Efectivo.rango), bound("q", String)))
    return query.order_by(Efectivo.id)


def list_efectivos(
    actor: Usuario,
    *,
    estados: Sequence[str] | None,
    unidad: str | None,
    especialidad: str | None,
    activo: bool | None,
    q: str | None,
    limit: int,
    offset: int,
    en_servicio: bool | None = None,
) -> tuple[list[Efectivo], int]:
    """A page of the efectivos ``actor`` may list, as ORM objects, and the total (the API answers ``list_efectivos_json``)."""
    return paginate(_matching(actor, _filter_values(estados, unidad, especialidad, q), activo, en_servicio), limit, offset)


# The columns an EfectivoOut is built from: the table's and the computed en_servicio.
_OUT_COLUMNS = (*Efectivo.__table__.c, Efectivo.en_servicio.expression.label("en_servicio"))


@functools.cache
def _page_item() -> ColumnElement[Any]:
    """The list's item, compiled at the first list rather than at every worker's start-up (json_sql.frozen)."""
    return json_sql.frozen(lambda page: json_sql.document(EfectivoOut, {c.key: c for c in page}), (c.name for c in _OUT_COLUMNS))


# One prepared page statement per shape: who reads, the filters present, activo and en_servicio (true, false
# or absent). At most 2 × 2^4 × 3 × 3 = 288 shapes exist; the ones in use are a handful.
_PAGES = PreparedShapes(64)


def list_efectivos_json(
    actor: Usuario,
    *,
    estados: Sequence[str] | None,
    unidad: str | None,
    especialidad: str | None,
    activo: bool | None,
    q: str | None,
    limit: int,
    offset: int,
    en_servicio: bool | None = None,
) -> str:
    """``list_efectivos`` as Page[EfectivoOut] JSON built by PostgreSQL in one statement (tests/test_list_json.py)."""
    values = _filter_values(estados, unidad, especialidad, q)
    shape = (policy.is_supervisor(actor), tuple(values), activo, en_servicio)

    def build() -> Any:
        matching = _matching(actor, values, activo, en_servicio).with_only_columns(*_OUT_COLUMNS)
        return json_sql.page(matching, (Efectivo.id,), limit, offset, lambda _page: _page_item())

    row = read_row(_PAGES.get(shape, build), values | {"limit": limit, "offset": offset, "actor_id": actor.id})
    assert row is not None  # an aggregate: always one row
    return str(row[0])


def update_efectivo(
    actor: Usuario, efectivo_id: int, changes: dict[str, Any], expected_version: int | None, caller: auth.CallerCheck | None = None
) -> Efectivo:
    """Supervisor+. ``caller``: as ``_lock``'s. Raises Unauthorized, NotFound, Forbidden, PreconditionFailed, Conflict,
    ValidationProblem (an unknown usuario to link)."""
    efectivo = _lock(efectivo_id, caller, actor, functools.partial(policy.require_nivel, actor, Nivel.SUPERVISOR, "Editing efectivos"))
    check_version(efectivo.version, expected_version, "efectivo")
    if changes_nothing(efectivo, changes):
        return efectivo
    _check_codigo(changes.get("codigo_interno"), exclude_id=efectivo.id)
    if "usuario_id" in changes and changes["usuario_id"] != efectivo.usuario_id:
        _check_usuario_link(changes["usuario_id"], exclude_id=efectivo.id)
    apply_changes(efectivo, changes)
    efectivo.version += 1
    db.session.flush()
    _record(EfectivoUpdated, efectivo, actor, {"changed": sorted(changes)})
    return efectivo


def active_assignment(efectivo_id: int) -> Asignacion | None:
    return db.session.scalar(select(Asignacion).where(Asignacion.efectivo_id == efectivo_id, Asignacion.liberado_en.is_(None)))


def deactivate_efectivo(actor: Usuario, efectivo_id: int, expected_version: int | None, caller: auth.CallerCheck | None = None) -> Efectivo:
    """Soft-delete, supervisor+. Refused (409) while the efectivo holds an active assignment. ``caller``: as ``_lock``'s."""
    efectivo = _lock(efectivo_id, caller, actor, functools.partial(policy.require_nivel, actor, Nivel.SUPERVISOR, "Deactivating efectivos"))
    check_version(efectivo.version, expected_version, "efectivo")
    if not efectivo.activo:
        return efectivo  # a DELETE retried: nothing changes, so no new version for other clients and no event
    holding = active_assignment(efectivo.id)
    if holding is not None:
        raise Conflict(
            f"Efectivo {efectivo.id} is assigned to tarea {holding.tarea_id}; unassign first.",
            mensaje="Está asignado a una tarea abierta: desasígnelo antes.",
            tarea_id=holding.tarea_id,
        )
    efectivo.activo = False
    _apply_disponibilidad(efectivo, Disponibilidad.FUERA_SERVICIO)  # announced by efectivo_updated below
    efectivo.version += 1
    db.session.flush()
    _record(EfectivoUpdated, efectivo, actor, {"activo": False})
    return efectivo


_NOMBRE_DISPONIBILIDAD = {
    Disponibilidad.DISPONIBLE: "disponible",
    Disponibilidad.EN_TAREA: "en tarea",
    Disponibilidad.FUERA_SERVICIO: "fuera de servicio",
    Disponibilidad.NO_DISPONIBLE: "no disponible",
}


def set_disponibilidad(
    actor: Usuario,
    efectivo_id: int,
    estado: Disponibilidad,
    motivo: str | None,
    expected_version: int | None,
    caller: auth.CallerCheck | None = None,
    *,
    desde: Disponibilidad | None = None,
) -> Efectivo:
    """Self or supervisor+. ``en_tarea`` is managed by assignment and cannot be set or left by hand while working;
    ``disponible`` asked for while a tarea they are on runs is ``en_tarea`` (the rule below). ``caller``: as
    ``_lock``'s; whose efectivo it is decides on the nivel the lock checked. ``desde``: the availability the choice
    was made from; changed meanwhile (to anything but ``estado``), Conflict and nothing changes."""
    efectivo = _lock(efectivo_id, caller, actor)
    if not policy.can_report_for_efectivo(actor, efectivo.usuario_id):
        raise Forbidden("You may only change your own availability.", mensaje="Solo puede cambiar su propia disponibilidad.")
    check_version(efectivo.version, expected_version, "efectivo")
    _require_active(efectivo)
    if estado == Disponibilidad.EN_TAREA:
        raise Conflict(
            "en_tarea is set by assigning the efectivo to a running tarea.",
            mensaje="«En tarea» lo pone la asignación a una tarea en curso.",
            allowed=[d.value for d in Disponibilidad if d != Disponibilidad.EN_TAREA],
        )
    holding = active_assignment(efectivo.id)
    if holding is not None and efectivo.estado_disponibilidad == Disponibilidad.EN_TAREA:
        tarea = db.session.get(Tarea, holding.tarea_id)
        raise Conflict(
            f"Efectivo {efectivo.id} is working tarea {tarea.codigo if tarea else holding.tarea_id}; it is released when the tarea ends.",
            mensaje=f"Está trabajando en la tarea {tarea.codigo if tarea else holding.tarea_id}: queda libre al terminarla.",
            tarea_id=holding.tarea_id,
        )
    actual = Disponibilidad(efectivo.estado_disponibilidad)
    if desde is not None and actual not in (desde, estado):
        # Checked after the rules above, whose refusals say more (working on a tarea). A choice an officer made
        # offline, sent when the coverage came back, must not undo what the central (or they, from another device)
        # set meanwhile: the version would not do, since every position fix bumps it.
        raise Conflict(
            f"Efectivo {efectivo.id}'s availability changed from {desde.value} to {actual.value} meanwhile; {estado.value} was not applied.",
            mensaje=f"Su disponibilidad cambió mientras tanto: ahora es «{_NOMBRE_DISPONIBILIDAD[actual]}». No se aplicó «{_NOMBRE_DISPONIBILIDAD[estado]}».",
            estado_actual=actual.value,
        )
    if estado == Disponibilidad.DISPONIBLE and holding is not None:
        # Back from a hand-set state while a tarea they are on runs: en_tarea, never free for dispatch.
        estado = following_assignments(estado, working=efectivo.id in working_on_running_tareas({efectivo.id}))
    change_disponibilidad(efectivo, estado, actor, motivo)
    db.session.flush()
    return efectivo


# Availability follows assignments by one rule (README "Availability and assignments", docs/ARCHITECTURE.md §6).
# An efectivo is *working* while actively assigned to a running tarea: en_curso, or pausada (a paused tarea
# still commits its efectivos, as the reports count it). Working, ``disponible`` becomes ``en_tarea``; working
# no more, ``en_tarea`` becomes ``disponible``. A state set by hand (``no_disponible``, ``fuera_servicio``) is
# stricter and stays: a tarea starting or ending never overwrites it, so dispatch never takes them.
# Concurrency: callers hold the efectivo's row lock (taken after the tarea's), so two tareas of one efectivo
# ending at once are serialised on it, and the second one's ``_working`` (a statement run after that lock was
# granted) sees the first one committed.


def following_assignments(estado: Disponibilidad, *, working: bool) -> Disponibilidad:
    """The rule itself: the state an efectivo in ``estado`` holds, given whether they are working."""
    if working and estado == Disponibilidad.DISPONIBLE:
        return Disponibilidad.EN_TAREA
    if not working and estado == Disponibilidad.EN_TAREA:
        return Disponibilidad.DISPONIBLE
    return estado


# Built once: every release and every tarea that stops running asks it.
_WORKING = (
    select(Asignacion.efectivo_id)
    .join(Tarea, Tarea.id == Asignacion.tarea_id)
    .where(
        Asignacion.efectivo_id.in_(bindparam("efectivo_ids", expanding=True)),
        Asignacion.liberado_en.is_(None),
        Tarea.estado.in_([e.value for e in ESTADOS_EN_MARCHA]),
        Tarea.deleted_at.is_(None),
    )
)


def working_on_running_tareas(efectivo_ids: Collection[int]) -> set[int]:
    """Of ``efectivo_ids``, those actively assigned to a running tarea (one statement)."""
    return set(db.session.scalars(_WORKING, {"efectivo_ids": sorted(efectivo_ids)}))


def put_to_work(efectivos: Iterable[Efectivo], actor: Usuario | None) -> None:
    """The rule for efectivos the caller has just made working (their tarea started or resumed, or they were
    assigned to a running one): ``disponible`` becomes ``en_tarea``, announced; a hand-set state stays.
    Runs no statement. The caller holds their row locks."""
    for efectivo in efectivos:
        _settle(efectivo, working=True, actor=actor)


def settle_after_release(efectivos: Iterable[Efectivo], actor: Usuario | None) -> None:
    """The rule for efectivos one of whose assignments just ended, or whose tarea just stopped running (the
    caller has flushed that): ``en_tarea`` becomes ``disponible``, announced, unless another running tarea
    still holds them. One statement, run only when one of them is ``en_tarea``. The caller holds their row locks."""
    busy = [e for e in efectivos if e.estado_disponibilidad == Disponibilidad.EN_TAREA]
    if not busy:
        return
    working = working_on_running_tareas({e.id for e in busy})
    for efectivo in busy:
        _settle(efectivo, working=efectivo.id in working, actor=actor)


def _settle(efectivo: Efectivo, *, working: bool, actor: Usuario | None) -> None:
    estado = Disponibilidad(efectivo.estado_disponibilidad)
    change_disponibilidad(efectivo, following_assignments(estado, working=working), actor)


def change_disponibilidad(efectivo: Efectivo, estado: Disponibilidad, actor: Usuario | None, motivo: str | None = None) -> None:
    """The one way an efectivo's availability changes and is announced (by hand, by assignment, by a tarea
    ending): bumps the version and writes one ``efectivo_status_changed``. No-op if it is already ``estado``.

    The caller holds the efectivo's row lock and has checked the rules; this only applies the change.
    """
    previous = _apply_disponibilidad(efectivo, estado)
    if previous is None:
        return
    efectivo.version += 1
    _record(EfectivoStatusChanged, efectivo, actor, {"from": previous, "to": estado.value, "motivo": motivo})


def _apply_disponibilidad(efectivo: Efectivo, estado: Disponibilidad) -> str | None:
    """Set the state and when it changed; the previous state, or None if nothing changed."""
    previous = efectivo.estado_disponibilidad
    if previous == estado.value:
        return None
    efectivo.estado_disponibilidad = estado.value
    efectivo.estado_cambiado_en = utcnow()
    return previous


# A phone's clock may run a little ahead of ours; beyond this a reported fix time is refused as being in the future.
FIX_CLOCK_SKEW = timedelta(seconds=30)


def set_ubicacion(
    actor: Usuario, efectivo_id: int, lat: float, lng: float, registrado_en: datetime | None = None, caller: auth.CallerCheck | None = None
) -> Efectivo:
    """Record a position and the time the fix was taken (self or supervisor+). No version check: the newest fix wins.
    ``caller``: ``actor`` came from the token cache, and the efectivo's lock checks it (``_lock``).

    ``registrado_en`` is the device's fix time (a fix queued offline arrives late); it defaults to now and may
    not be in the future (ValidationProblem). Dispatch reads ``posicion_en``, so a late fix counts as old as it
    is. A fix older than the recorded one is acknowledged without moving the efectivo back.
    """
    efectivo = _lock(efectivo_id, caller, actor)
    if not policy.can_report_for_efectivo(actor, efectivo.usuario_id):
        raise Forbidden("You may only report your own position.")
    # Dado de baja, nobody dispatches them and the map does not show them: a phone still reporting would only record
    # where someone no longer in service goes.
    _require_active(efectivo)
    now = utcnow()
    if registrado_en is not None and registrado_en > now + FIX_CLOCK_SKEW:
        raise ValidationProblem(
            "The fix time is in the future.",
            errors=[
                {
                    "field": "body.registrado_en",
                    "message": "must not be in the future",
                    "type": "future_fix",
                    "mensaje": "La hora de la posición no puede ser futura.",
                }
            ],
        )
    fix_time = min(registrado_en, now) if registrado_en is not None else now
    if efectivo.posicion_en is not None and fix_time < efectivo.posicion_en:
        return efectivo
    en_servicio = efectivo.en_servicio  # as the lock loaded it
    efectivo.lat = lat
    efectivo.lon = lng
    efectivo.posicion_en = fix_time
    efectivo.version += 1
    db.session.flush()
    # The flush expires the computed column, and reading it again cost a position (the bulk of the writes) a round
    # trip: this transaction changes no turno or licencia, and now() is its start time, so the value holds.
    set_committed_value(efectivo, "en_servicio", en_servicio)
    _record(EfectivoLocationUpdate, efectivo, actor)
    return efectivo


def _require_active(efectivo: Efectivo) -> None:
    if not efectivo.activo:
        raise Conflict(f"Efectivo {efectivo.id} is deactivated.", mensaje="El efectivo está dado de baja.")


class PositionAnswer(NamedTuple):
    """A position report's answer: the efectivo's EfectivoOut JSON and its version (the ETag)."""

    document: str
    version: int


def report_position(
    actor: Usuario, efectivo_id: int, lat: float, lng: float, registrado_en: datetime | None = None, caller: auth.CallerCheck | None = None
) -> PositionAnswer:
    """``set_ubicacion`` for the API, where a phone reports every few seconds (the bulk of the service's writes):
    the usual report — the newest fix of an efectivo the caller may report for — is one statement that locks and
    updates the row, checks a cached caller (``auth.CALLER_CHECK_SQL``), takes the event's id and returns the
    EfectivoOut document PostgreSQL builds (``_page_item``, as the list's; tests/test_position_json.py holds it
    equal to the ORM path's). Anything else — an unknown or deactivated efectivo, someone else's, an older or future
    fix, a caller who no longer holds — writes nothing there and is decided by ``set_ubicacion``, with its answers."""
    now = utcnow()
    fix_time = registrado_en if registrado_en is not None else now
    # A fix from the future is set_ubicacion's to refuse, and an id beyond the column's range its 404: bound as the
    # prepared statement's integer, it would fail as a value out of range.
    if fix_time <= now and efectivo_id <= ID_MAX:
        checked = caller is not None and not caller.confirmed
        own_only = not policy.can_report_for_efectivo(actor, None)  # not a supervisor: their own efectivo only
        values = {"efectivo_id": efectivo_id, "lat": lat, "lon": lng, "fix": fix_time, "now": now, "actor": actor.id}
        if checked and caller is not None:
            values |= caller.params()
        row = _move(checked, own_only).first(db.session().connection(), values)
        if row is not None:
            document, version, fields, (last_id, last_hash) = row[0], row[1], row[2:-2], row[-2:]
            if caller is not None:
                caller.confirmed = True
            events.took_ids(db.session(), int(last_id), str(last_hash), 1)
            payload = dict(zip(_MOVED_FIELDS, fields, strict=True)) | {"lat": lat, "lng": lng, "posicion_en": fix_time.isoformat()}
            event = EfectivoLocationUpdate.model_validate(payload)
            events.record(db.session(), event, topic="efectivos", entity_type="efectivo", entity_id=efectivo_id, actor_id=actor.id)
            return PositionAnswer(str(document), int(version))
    efectivo = set_ubicacion(actor, efectivo_id, lat, lng, registrado_en, caller)
    return PositionAnswer(EfectivoOut.model_validate(efectivo).model_dump_json(), efectivo.version)


# What an efectivo_location_update carries besides the position the request gave, read from the row by the same
# names: the event's schema decides, so a field added to it is selected too (or fails as the statement is built).
_MOVED_FIELDS = tuple(name for name in EfectivoLocationUpdate.model_fields if name not in {"lat", "lng", "posicion_en"})


@functools.cache
def _move(checked: bool, own_only: bool) -> Prepared:
    """The usual position report in one statement, prepared once per connection: the efectivo's row updated only
    if the fix is not older than the recorded one, the caller may report for it (``own_only``: it is the caller's)
    and, ``checked``, the cached caller still holds; then the event's id taken from the counter (only if a row was
    updated), and the document, the version, the event's fields and the ids. No row: nothing was written."""
    own = " AND usuario_id = CAST(:actor AS integer)" if own_only else ""
    check = f" AND EXISTS ({auth.CALLER_CHECK_SQL})" if checked else ""
    en_servicio = json_sql.frozen(lambda moved: en_servicio_at(moved.id, func.now()), ["id"], source="moved")
    statement = text(
        "WITH moved AS (UPDATE efectivos SET lat = :lat, lon = :lon, posicion_en = :fix, updated_at = :now, version = version + 1 "
        f"WHERE id = :efectivo_id AND activo AND (posicion_en IS NULL OR posicion_en <= :fix){own}{check} RETURNING *), "
        f"ids AS ({events.TAKE_ONE_ID_CTE.format(source='moved')}) "
        f"SELECT CAST({_page_item().name} AS text), {json_sql.PAGE}.version, {', '.join(f'{json_sql.PAGE}.{name}' for name in _MOVED_FIELDS)}, "
        "(SELECT last_id FROM ids), (SELECT last_hash FROM ids) "
        f"FROM (SELECT moved.*, {en_servicio.name} AS en_servicio FROM moved) AS {json_sql.PAGE}"
    )
    typed: dict[str, TypeEngine[Any]] = {
        "efectivo_id": Integer(),
        "lat": Float(),
        "lon": Float(),
        "fix": DateTime(timezone=True),
        "now": DateTime(timezone=True),
        "actor": Integer(),
    }
    return Prepared(statement.bindparams(*(bindparam(name, type_=type_) for name, type_ in typed.items() if f":{name}" in statement.text)))


def count_by_disponibilidad() -> dict[str, int]:
    return count_by(Efectivo.estado_disponibilidad, (d.value for d in Disponibilidad), Efectivo.activo.is_(True))
