"""Tareas: create, read, list, edit and soft-delete. State changes live in ``transitions``, assignment in ``asignaciones``.

Concurrency: every write locks the rows it decides on (``SELECT ... FOR UPDATE``) before checking
versions, states or availability, so two dispatchers acting at once are serialised by PostgreSQL and
the second one sees the first one's result (409/412) instead of overwriting it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, BigInteger, ColumnElement, DateTime, Integer, Select, String, Text, any_, bindparam, column, exists, select, text
from sqlalchemy.dialects import postgresql

from gad import policy
from gad.db_session import as_uuid, loaded
from gad.errors import Conflict, NotFound, ValidationProblem, field_error
from gad.extensions import db
from gad.models import Asignacion, HistorialEstado, Tarea, Usuario, utcnow
from gad.pg import Prepared
from gad.realtime import events
from gad.schemas.events import EmergencyCreated, TaskCreated, TaskDeleted, TaskUpdated
from gad.services import auth, json_sql, turnos
from gad.services.asignaciones import release_all
from gad.services.common import apply_changes, changes_nothing, check_version, count_by, found_in, paginate_rows
from gad.services.tarea_events import SUMMARY_COLUMNS, record_payload, record_summary, record_tarea_event, tarea_event
from gad.services.tarea_queries import (
    HISTORIAL_ORDER,
    TAREA_COLUMNS,
    WITH_ASSIGNED,
    TareaRow,
    asignados_by_tarea,
    load_tarea,
    lock_tarea,
    reader_usuario_ids,
    require_readable,
    row_of,
    tarea_object,
    visible_to,
)
from gad.text import search_regex
from gad.vocab import EstadoTarea, Nivel

# API field name -> column name where they differ (the seed's clients say "lng").
_FIELD_COLUMNS = {"ubicacion_lng": "ubicacion_lon"}


def _check_delegado(delegado_id: int | None) -> None:
    if delegado_id is None:
        return
    delegado = db.session.get(Usuario, delegado_id)
    if delegado is None or not delegado.activo:
        raise ValidationProblem(
            "Unknown delegado.",
            errors=[
                field_error(
                    "body.delegado_usuario_id",
                    "unknown_id",
                    f"usuario {delegado_id} does not exist or is inactive",
                    es=f"El usuario {delegado_id} no existe o no está activo.",
                )
            ],
        )


def _check_schedule(inicio: datetime | None, fin: datetime | None) -> None:
    if inicio and fin and fin <= inicio:
        raise ValidationProblem(
            "Schedule is inconsistent.",
            errors=[{"field": "body.fin_programado", "message": "must be after inicio_programado", "type": "schedule"}],
        )


_TAREAS = Tarea.__table__
_DEFAULTED = [column for column in _TAREAS.c if column.default is not None and not column.primary_key]
_TAREA_KEYS = tuple(Tarea.__mapper__.get_property_by_column(column).key for column in _TAREAS.c)


# Columns whose values travel as text and are cast in the statement: a prepared statement hands values to psycopg2
# as they are, and psycopg2 adapts no dict.
_AS_TEXT = {"extra": "jsonb"}


@functools.cache
def _insert_new(columns: tuple[str, ...], answered: bool, checked: bool = False, fixed: tuple[tuple[str, Any], ...] = ()) -> Prepared:
    """A new tarea with these columns and its creation row in historial_estados, in one statement (text, so
    SQLAlchemy caches its compilation: its ON CONFLICT construct is never cached), prepared once per connection
    (``gad.pg.Prepared``: planning it took PostgreSQL half the time of running it). The unique index decides a
    taken codigo: no row comes back, and the history row is not written either.

    Without ``answered`` it returns the row's columns, for a caller that goes on working with the tarea. With it,
    the creation is the request's last write and its answer: the statement also takes the creation event's id
    from the event log's counter (``events.TAKE_ONE_ID_CTE``), after the tarea row exists and only if it does, so
    the commit appends the event without that round trip; and it returns the tarea's TareaOut document built by
    PostgreSQL from the row it wrote (as a GET builds it, ``tarea_queries.tarea_object``), then the columns its
    event carries, then the event id and chain head it took (``create_tarea`` reads them).

    ``checked``: the tarea is written only if the caller the token cache gave still holds as PostgreSQL sees the
    usuario in this same statement (``auth.CALLER_CHECK_SQL``): otherwise no row comes back,
    as for a taken codigo, and ``_insert`` finds out which it was.

    ``fixed``: values the code gives, not the body (the estado, whether an emergency, the constant column
    defaults), written into the statement as literals of their column's type: each is the same for every
    execution of the statement, and every parameter costs psycopg2 an adaptation and its quoting per call."""
    literals = dict(fixed)

    def value(name: str) -> str:
        if name in _MADE_BY_POSTGRESQL:
            return _MADE_BY_POSTGRESQL[name]
        if name in literals:
            return f"CAST({_sql_literal(literals[name])} AS {_TAREAS.c[name].type.compile(dialect=_DIALECT)})"
        return f"CAST(:{name} AS {_AS_TEXT[name]})" if name in _AS_TEXT else f":{name}"

    params = ", ".join(value(name) for name in columns)
    # PostgreSQL types the values of an INSERT's SELECT by the target columns, as it does a VALUES list's.
    caller, rows = (f"caller AS ({auth.CALLER_CHECK_SQL}), ", f"SELECT {params} FROM caller") if checked else ("", f"VALUES ({params})")
    ids = taken = ""
    selected: list[Any] = list(_TAREAS.c)
    select_list = ", ".join(column.name for column in _TAREAS.c)
    if answered:
        ids = f", ids AS ({events.TAKE_ONE_ID_CTE.format(source='nueva')})"
        taken = ", (SELECT last_id FROM ids), (SELECT last_hash FROM ids)"
        built = json_sql.frozen(lambda row: tarea_object(row, unassigned=True), (column.name for column in _TAREAS.c), source="nueva")
        summary = [_TAREAS.c[name] for name in SUMMARY_COLUMNS.values()]
        selected = [column("_document", Text), *summary, column("_last_id", BigInteger), column("_last_hash", String)]
        select_list = ", ".join([f"CAST({built.name} AS text)", *SUMMARY_COLUMNS.values()])
    statement = text(
        f"WITH {caller}nueva AS (INSERT INTO tareas ({', '.join(columns)}) {rows} ON CONFLICT (codigo) DO NOTHING RETURNING *), "
        "creacion AS (INSERT INTO historial_estados (tarea_id, estado_anterior, estado_nuevo, usuario_id, motivo, created_at) "
        # The creator is the actor: one parameter for both; the motivo is the same for every creation.
        f"SELECT id, NULL, estado, creado_por_usuario_id, CAST('{_CREATION_MOTIVO}' AS text), created_at FROM nueva){ids} "
        f"SELECT {select_list}{taken} FROM nueva"  # in the order .columns() reads them
    )
    bound = [name for name in columns if name not in literals and name not in _MADE_BY_POSTGRESQL]
    typed = [bindparam(name, type_=String if name in _AS_TEXT else _TAREAS.c[name].type) for name in bound]
    return Prepared(statement.bindparams(*typed).columns(*selected))


_DIALECT = postgresql.dialect()
# Values PostgreSQL makes in the statement rather than Python before it: a new tarea's uuid (random, as uuid4 is;
# built in Python it was a system call, an object, its text and a parameter per create).
_MADE_BY_POSTGRESQL = {"uuid": "gen_random_uuid()"}
_CREATION_MOTIVO = "Tarea creada"


def _sql_literal(value: Any) -> str:
    """A value the code fixes (never the body's) as SQL: booleans, integers, and plain strings such as an estado."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str) and value.isascii() and value.replace("_", "").isalnum():
        return f"'{value}'"
    raise ValueError(f"not a literal the statement may embed: {value!r}")


class CreatedTarea(NamedTuple):
    """A tarea just created: its TareaOut document as PostgreSQL built it, and what a response's headers need."""

    document: str
    id: int
    version: int


def create_tarea(actor: Usuario, data: dict[str, Any], caller: auth.CallerCheck | None = None) -> CreatedTarea:
    """Supervisor+. ``creado_por`` is always ``actor``. The creation is the request's last write: its statement
    takes the event's id too (``events.took_ids``) and returns the new tarea as TareaOut JSON built by PostgreSQL
    (nobody is assigned yet), so nothing of it is loaded, validated or serialised again in Python. ``caller``:
    ``actor`` came from the token cache, and the statement checks it (``_insert_new``'s ``checked``).

    Raises Unauthorized (``caller``'s token no longer holds), Forbidden, Conflict (codigo taken),
    ValidationProblem (unknown delegado, bad schedule).
    """
    row = _insert(actor, data, es_emergencia=False, estado=EstadoTarea.PROGRAMADA, answered=True, caller=caller)
    document, summary, (last_id, last_hash) = row[0], row[1:-2], row[-2:]
    fields = dict(zip(SUMMARY_COLUMNS, summary, strict=True))
    events.took_ids(db.session(), int(last_id), str(last_hash), 1)
    record_summary(TaskCreated, fields, actor)  # nobody assigned yet
    return CreatedTarea(str(document), fields["id"], fields["version"])


def new_tarea(actor: Usuario, data: dict[str, Any], *, es_emergencia: bool = False, estado: EstadoTarea = EstadoTarea.PROGRAMADA) -> Tarea:
    """The tarea itself, in the session, for services that go on working with it (dispatch). Raises as
    ``create_tarea`` (an emergency is any usuario's to raise: ``dispatch.raise_emergency`` decides)."""
    row = _insert(actor, data, es_emergencia=es_emergencia, estado=estado, answered=False)
    created = dict(zip(_TAREA_KEYS, row, strict=True))
    created["uuid"] = as_uuid(created["uuid"])
    tarea = loaded(Tarea, created)
    record_tarea_event(EmergencyCreated if es_emergencia else TaskCreated, tarea, actor, assigned=set())  # nobody yet
    return tarea


def _insert(
    actor: Usuario, data: dict[str, Any], *, es_emergencia: bool, estado: EstadoTarea, answered: bool, caller: auth.CallerCheck | None = None
) -> Sequence[Any]:
    """The new tarea's row as ``_insert_new`` returns it. Raises Unauthorized, Forbidden, Conflict, ValidationProblem."""
    nivel = Nivel.EFECTIVO if es_emergencia else Nivel.SUPERVISOR  # an emergency is any usuario's to raise
    if caller is not None and (actor.nivel < nivel or data.get("delegado_usuario_id") is not None):
        # Refuse on the nivel PostgreSQL holds, not on the cache's; and before telling a caller the INSERT would
        # refuse anything about another usuario (whether a delegado exists).
        auth.confirm_caller(caller, actor)
    if not es_emergencia:
        policy.require_nivel(actor, Nivel.SUPERVISOR, "Creating tareas")
    data = {_FIELD_COLUMNS.get(k, k): v for k, v in data.items()}
    _check_delegado(data.get("delegado_usuario_id"))
    columns, shape, made_per_row = _shape_of(tuple(data), estado, es_emergencia)
    values = data | {"tipo": str(data["tipo"]), "creado_por_usuario_id": actor.id}
    values.pop("estado", None)
    values.pop("es_emergencia", None)
    if estado == EstadoTarea.EN_CURSO:
        values["inicio_real"] = utcnow()
    for key, make in made_per_row:
        values[key] = make(None)
    if values.get("extra") is not None:
        values["extra"] = json.dumps(values["extra"])
    # On the connection, and only what the caller needs of the row: the ORM's statement compile state and row
    # loading cost more than the statement's round trip.
    connection = db.session().connection()
    if caller is None or caller.confirmed:
        row = _insert_new(columns, answered, False, shape).first(connection, values)
    else:
        row = _insert_new(columns, answered, True, shape).first(connection, values | caller.params())
        if row is not None:
            caller.confirmed = True
        else:  # a taken codigo, or a caller who may no longer write: read the caller, then write as before
            auth.confirm_caller(caller, actor)
            policy.require_nivel(actor, nivel, "Creating tareas")
            row = _insert_new(columns, answered, False, shape).first(connection, values)
    if row is None:
        raise Conflict(f"Codigo {data['codigo']} is already used.", mensaje=f"El código {data['codigo']} ya existe.", field="codigo")
    return row


class _Shape(NamedTuple):
    columns: tuple[str, ...]  # every column the INSERT names, sorted (``_insert_new``'s key)
    fixed: tuple[tuple[str, Any], ...]  # values the code fixes rather than the body, written into the statement
    made_per_row: tuple[tuple[str, Callable[[Any], Any]], ...]  # the ORM's callable defaults (instants), called per row


@functools.lru_cache(maxsize=64)
def _shape_of(keys: tuple[str, ...], estado: EstadoTarea, es_emergencia: bool) -> _Shape:
    """What ``_insert`` writes besides the body's values, for one set of body keys: the same for every create of a
    schema, so worked out once (the walk over the table's defaults and two sorts were ~1 % of a create's CPU)."""
    fixed = {"estado": estado.value, "es_emergencia": es_emergencia}
    given = (set(keys) | {"tipo", "creado_por_usuario_id"} | ({"inicio_real"} if estado == EstadoTarea.EN_CURSO else set())) - fixed.keys()
    made_per_row = []
    for default in _DEFAULTED:  # what the ORM would fill in (instants, version, ...)
        if default.key not in given and default.key not in fixed and default.key not in _MADE_BY_POSTGRESQL:
            if default.default.is_callable:
                made_per_row.append((default.key, default.default.arg))
            else:
                fixed[default.key] = default.default.arg
    columns = tuple(sorted(given | {key for key, _ in made_per_row} | fixed.keys() | _MADE_BY_POSTGRESQL.keys()))
    return _Shape(columns, tuple(sorted(fixed.items())), tuple(made_per_row))


def get_tarea(actor: Usuario, tarea_id: int) -> Tarea:
    tarea = load_tarea(tarea_id)
    reporter = policy.reporter_of(tarea.es_emergencia, tarea.creado_por_usuario_id)
    require_readable(actor, tarea.delegado_usuario_id, lambda: reader_usuario_ids(tarea.id), reporter)
    return tarea


def read_tarea(actor: Usuario, tarea_id: int) -> TareaRow:
    """A readable tarea with its active assignments, in one query. Raises NotFound, Forbidden."""
    row = db.session.execute(WITH_ASSIGNED, {"tarea_id": tarea_id}).mappings().first()
    if row is None:
        raise NotFound(f"Tarea {tarea_id} does not exist.")
    tarea = dict(row)
    asignados, lectores = tarea.pop("asignados"), tarea.pop("lectores")
    reporter = policy.reporter_of(tarea["es_emergencia"], tarea["creado_por_usuario_id"])
    require_readable(actor, tarea["delegado_usuario_id"], lambda: set(lectores), reporter)
    return tarea | {"efectivos": asignados}


def list_tareas(actor: Usuario, filters: dict[str, Any], limit: int, offset: int) -> tuple[list[TareaRow], int]:
    """A page of readable tareas and the total. Plain rows, not ORM objects: for a page of 100, building ORM
    objects and reading them back attribute by attribute cost more than the query itself."""
    rows, total = paginate_rows(filtered(visible_to(select(Tarea).where(Tarea.deleted_at.is_(None)), actor), filters), limit, offset)
    asignados = asignados_by_tarea([row["id"] for row in rows])  # one query for the whole page
    return [row | {"efectivos": asignados.get(row["id"], [])} for row in rows], total


def filter_values(filters: dict[str, Any]) -> dict[str, Any]:
    """The values of the list's filters that are present, by the name of the bind parameter each becomes."""
    values: dict[str, Any] = {}
    for name in ("estado", "tipo"):
        if filters.get(name):
            values[name] = [str(v) for v in filters[name]]
    for name in ("prioridad_min", "prioridad_max", "delegado_usuario_id", "efectivo_id", "desde", "hasta"):
        if filters.get(name) is not None:
            values[name] = filters[name]
    if filters.get("q"):
        values["q"] = search_regex(filters["q"])
    return values


def filtered(query: Select[tuple[Tarea]], filters: dict[str, Any]) -> Select[Any]:
    """The list's filters and sort order, on a query already narrowed to what the caller may read.

    Every filter is one named bind parameter (``filter_values``): two requests with the same filters
    present are then the same SQL whatever their values, which ``tarea_json`` prepares once per shape."""
    values = filter_values(filters)

    def bound(name: str, type_: Any) -> Any:
        return bindparam(name, values[name], type_=type_)

    conditions = {
        "estado": lambda: Tarea.estado == any_(bound("estado", ARRAY(String))),
        "tipo": lambda: Tarea.tipo == any_(bound("tipo", ARRAY(String))),
        "prioridad_min": lambda: Tarea.prioridad >= bound("prioridad_min", Integer),
        "prioridad_max": lambda: Tarea.prioridad <= bound("prioridad_max", Integer),
        "delegado_usuario_id": lambda: Tarea.delegado_usuario_id == bound("delegado_usuario_id", Integer),
        "efectivo_id": lambda: exists(
            select(Asignacion.id).where(
                Asignacion.tarea_id == Tarea.id, Asignacion.efectivo_id == bound("efectivo_id", Integer), Asignacion.liberado_en.is_(None)
            )
        ),
        "desde": lambda: Tarea.inicio_programado >= bound("desde", DateTime(timezone=True)),
        "hasta": lambda: Tarea.inicio_programado < bound("hasta", DateTime(timezone=True)),
        "q": lambda: found_in((Tarea.codigo, Tarea.titulo, Tarea.descripcion), bound("q", String)),
    }
    for name in values:
        query = query.where(conditions[name]())
    return query.order_by(*ordering(filters.get("sort"))).with_only_columns(*TAREA_COLUMNS)


def ordering(sort: str | None) -> tuple[ColumnElement[Any], ...]:
    """The list's ORDER BY for a ``sort`` parameter (None: newest first); the id breaks ties."""
    sort = sort or "-created_at"
    name = sort.lstrip("-")
    column = getattr(Tarea, name)
    ordered = column.desc() if sort.startswith("-") else column.asc()
    # NULLS LAST only where there can be nulls: on a NOT NULL column it changes nothing in the answer but keeps
    # PostgreSQL from reading the page off the column's index (ix_tareas_created_at for the default order).
    if Tarea.__table__.c[name].nullable:
        ordered = ordered.nulls_last()
    return (ordered, Tarea.id.desc())


def update_tarea(actor: Usuario, tarea_id: int, changes: dict[str, Any], expected_version: int | None, caller: auth.CallerCheck | None = None) -> TareaRow:
    """Partial update (supervisor+). ``estado`` is not editable here: use ``transition``. ``caller``: ``actor``
    came from the token cache, and the tarea's lock checks it (``lock_tarea``).

    Raises Unauthorized, NotFound, Forbidden, PreconditionFailed, ValidationProblem.
    """
    tarea = lock_tarea(tarea_id, actor, caller, functools.partial(policy.require_nivel, actor, Nivel.SUPERVISOR, "Editing tareas"))
    check_version(tarea.version, expected_version, "tarea")
    changes = {_FIELD_COLUMNS.get(k, k): v for k, v in changes.items()}
    if "tipo" in changes:
        changes["tipo"] = str(changes["tipo"])
    if changes_nothing(tarea, changes):
        return row_of(tarea)
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
    before = {name: _jsonable(getattr(tarea, name)) for name in changes}
    apply_changes(tarea, changes)
    tarea.version += 1
    if {"inicio_programado", "fin_programado"} & changes.keys():
        turnos.rebook(tarea)  # the booked windows follow the schedule (409 if one no longer fits)
    db.session.flush()
    after = {name: _jsonable(getattr(tarea, name)) for name in changes}
    record_tarea_event(TaskUpdated, tarea, actor, {"before": before, "after": after})
    return row_of(tarea)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def delete_tarea(actor: Usuario, tarea_id: int, expected_version: int | None, caller: auth.CallerCheck | None = None) -> None:
    """Soft-delete (administradores). Releases any efectivo still assigned. ``caller``: as ``update_tarea``'s."""
    tarea = lock_tarea(tarea_id, actor, caller, functools.partial(policy.require_nivel, actor, Nivel.ADMINISTRADOR, "Deleting tareas"))
    check_version(tarea.version, expected_version, "tarea")
    deleted = tarea_event(TaskDeleted, tarea)  # as it was, told to the efectivos it releases (their phone pages drop it)
    release_all(tarea, actor)
    tarea.deleted_at = utcnow()
    tarea.version += 1
    db.session.flush()
    record_payload(deleted, actor)


def historial(actor: Usuario, tarea_id: int) -> list[HistorialEstado]:
    tarea = get_tarea(actor, tarea_id)
    return list(db.session.scalars(select(HistorialEstado).where(HistorialEstado.tarea_id == tarea.id).order_by(*HISTORIAL_ORDER)))


def count_by_estado() -> dict[str, int]:
    return count_by(Tarea.estado, (e.value for e in EstadoTarea), Tarea.deleted_at.is_(None))
