"""Turnos, licencias and bookings: who is on duty when, who is away, and which windows are taken.

The database is the guarantee (migration 0004f): exclusion constraints keep one efectivo's turnos,
licencias and booked windows from overlapping, and a trigger keeps turnos and bookings out of
licencias. Services lock the efectivo's row first (the trigger does too), so their own conflict check
is already authoritative and can name the clash; if the database still refuses (a writer outside
this service), the refusal is turned into the same 409 naming what is in the way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.dialects.postgresql import TSTZRANGE, Range
from sqlalchemy.exc import IntegrityError

from gad import policy
from gad.db_session import for_update
from gad.errors import Conflict, Forbidden, NotFound, ValidationProblem, field_error
from gad.extensions import db
from gad.models import Asignacion, Efectivo, Licencia, Tarea, Turno, Usuario, utcnow
from gad.realtime import events
from gad.schemas.events import AgendaEvent, LicenciaCreated, LicenciaDeleted, TurnoDeleted, TurnosCreated, TurnoUpdated
from gad.services.common import changes_nothing, check_version, paginate
from gad.vocab import Nivel, TipoLicencia, TipoTurno

A = TypeVar("A", Turno, Licencia)

TOPIC = "turnos"
MAX_TURNO = timedelta(hours=72)
MAX_OCURRENCIAS = 1000
MAX_HORIZONTE = timedelta(days=400)
# Constraint names the database reports (migration 0004f) -> what the 409 is about.
AGENDA_CONSTRAINTS = frozenset(
    {
        "ex_turnos_sin_solape",
        "ex_licencias_sin_solape",
        "ex_asignaciones_reserva_sin_solape",
        "turnos_en_licencia",
        "asignaciones_en_licencia",
        "licencia_con_turnos",
        "licencia_con_reservas",
        "uq_asignaciones_efectivo_activa",
    }
)


def zona() -> ZoneInfo:
    return ZoneInfo(current_app.config["ZONA_HORARIA"])


def periodo(inicio: datetime, fin: datetime) -> Range[datetime]:
    """Half-open [inicio, fin): a shift ending at 08:00 and the next starting at 08:00 do not overlap."""
    return Range(inicio, fin, bounds="[)")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _local_iso(value: datetime) -> str:
    """An instant on the zone's wall clock, or in UTC where the zone's offset then had seconds (local mean time
    before standard time: Madrid's -00:14:44 until 1901, Amsterdam's +00:19:32 until 1937). RFC 3339 offsets are
    whole minutes: a client's parser refuses the other, though the instant is the same."""
    offset = value.utcoffset()
    if offset is not None and offset.seconds % 60:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def turno_dict(turno: Turno) -> dict[str, Any]:
    return {
        "id": turno.id,
        "efectivo_id": turno.efectivo_id,
        "unidad": turno.unidad,
        "tipo": turno.tipo,
        "inicio": turno.periodo.lower,
        "fin": turno.periodo.upper,
        "serie": turno.serie,
        "notas": turno.notas,
        "version": turno.version,
        "creado_por_usuario_id": turno.creado_por_usuario_id,
        "created_at": turno.created_at,
    }


def licencia_dict(licencia: Licencia) -> dict[str, Any]:
    return {
        "id": licencia.id,
        "efectivo_id": licencia.efectivo_id,
        "tipo": licencia.tipo,
        "inicio": licencia.periodo.lower,
        "fin": licencia.periodo.upper,
        "motivo": licencia.motivo,
        "version": licencia.version,
        "creado_por_usuario_id": licencia.creado_por_usuario_id,
        "created_at": licencia.created_at,
    }


def _event_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: (_iso(v) if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v) for k, v in item.items()}


def _record(payload: AgendaEvent, entity_type: str, entity_id: int | None, actor: Usuario) -> None:
    events.record(db.session(), payload, topic=TOPIC, entity_type=entity_type, entity_id=entity_id, actor_id=actor.id)


def _require_active(efectivo: Efectivo) -> None:
    """A shift or a leave is given only to an efectivo still in service (Conflict): the planner reads a leave as
    someone to cover for."""
    if not efectivo.activo:
        raise Conflict(f"Efectivo {efectivo.codigo_interno} is deactivated.", mensaje=f"{efectivo.codigo_interno} está dado de baja.", efectivo_id=efectivo.id)


def _whose(efectivo: Efectivo) -> dict[str, Any]:
    return {"efectivo_id": efectivo.id, "usuario_id": efectivo.usuario_id, "unidad": efectivo.unidad}


# --- conflicts -----------------------------------------------------------------------------------


class Choque(NamedTuple):
    """Something in the way of a candidate range: an existing turno, licencia or booking (tarea)."""

    clase: str  # "turno", "licencia" or "reserva"
    id: int  # turno id, licencia id, or the tarea id of the booking
    inicio: datetime
    fin: datetime
    ocurrencia: int  # index of the candidate range it collides with (0-based)
    codigo: str | None = None  # the tarea's codigo for a reserva

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"clase": self.clase, "id": self.id, "inicio": _iso(self.inicio), "fin": _iso(self.fin), "ocurrencia": self.ocurrencia}
        if self.codigo is not None:
            out["codigo"] = self.codigo
        return out

    def describe(self) -> str:
        what = {"turno": f"turno {self.id}", "licencia": f"licencia {self.id}", "reserva": f"tarea {self.codigo or self.id}"}[self.clase]
        return f"{what} ({_iso(self.inicio)} – {_iso(self.fin)})"

    def describir(self) -> str:
        """The same, in Spanish, for the pages (problem ``mensaje``)."""
        return {"turno": "un turno", "licencia": "una licencia", "reserva": f"la tarea {self.codigo or self.id}"}[self.clase]


# One round trip for any number of candidate ranges: unnest them and probe the exclusion indexes.
_CHOQUES = text(
    """
    WITH c AS (SELECT tstzrange(s, e, '[)') AS r, i - 1 AS idx
               FROM unnest(CAST(:starts AS timestamptz[]), CAST(:ends AS timestamptz[])) WITH ORDINALITY AS u(s, e, i))
    SELECT 'turno' AS clase, t.id, lower(t.periodo) AS inicio, upper(t.periodo) AS fin, c.idx, NULL AS codigo
      FROM c JOIN turnos t ON t.efectivo_id = :efectivo_id AND t.periodo && c.r
     WHERE :turnos AND t.id <> :skip_turno
    UNION ALL
    SELECT 'licencia', l.id, lower(l.periodo), upper(l.periodo), c.idx, NULL
      FROM c JOIN licencias l ON l.efectivo_id = :efectivo_id AND l.periodo && c.r
     WHERE :licencias AND l.id <> :skip_licencia
    UNION ALL
    SELECT 'reserva', a.tarea_id, lower(a.periodo), upper(a.periodo), c.idx, ta.codigo
      FROM c JOIN asignaciones a ON a.efectivo_id = :efectivo_id AND a.liberado_en IS NULL AND a.periodo && c.r
      JOIN tareas ta ON ta.id = a.tarea_id
     WHERE :reservas AND a.tarea_id <> :skip_tarea
    ORDER BY idx, inicio
    """
)


def choques(
    efectivo_id: int,
    rangos: Sequence[tuple[datetime, datetime]],
    *,
    turnos: bool = True,
    licencias: bool = True,
    reservas: bool = False,
    skip_turno: int = 0,
    skip_licencia: int = 0,
    skip_tarea: int = 0,
) -> list[Choque]:
    """Everything of the efectivo's agenda that overlaps any of ``rangos`` (by candidate, then time)."""
    if not rangos:
        return []
    rows = db.session.execute(
        _CHOQUES,
        {
            "starts": [r[0] for r in rangos],
            "ends": [r[1] for r in rangos],
            "efectivo_id": efectivo_id,
            "turnos": turnos,
            "licencias": licencias,
            "reservas": reservas,
            "skip_turno": skip_turno,
            "skip_licencia": skip_licencia,
            "skip_tarea": skip_tarea,
        },
    )
    return [Choque(row.clase, int(row.id), row.inicio, row.fin, int(row.idx), row.codigo) for row in rows]


def _raise_conflict(subject: str, found: list[Choque]) -> None:
    first = found[0]
    raise Conflict(
        f"{subject} overlaps {first.describe()}.",
        mensaje=f"Se solapa con {first.describir()} del efectivo.",
        conflicto=first.as_dict(),
        conflictos=[c.as_dict() for c in found[:20]],
        total_conflictos=len(found),
    )


def constraint_of(exc: IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


@contextmanager
def refused_as_conflict(subject: str, recheck: Any) -> Iterator[None]:
    """Run a write in a savepoint; if an agenda constraint refuses it, answer 409 naming the clash.

    ``recheck`` returns the clashes as the database now sees them (the refusing transaction has
    committed by the time PostgreSQL reports the violation).
    """
    try:
        with db.session.begin_nested():
            yield
            db.session.flush()
    except IntegrityError as exc:
        name = constraint_of(exc)
        if name not in AGENDA_CONSTRAINTS:
            raise
        found = recheck()
        if found:
            _raise_conflict(subject, found)
        raise Conflict(f"{subject} conflicts with the efectivo's agenda.", constraint=name) from None


def _lock_efectivo(efectivo_id: int, *, field: str = "body.efectivo_id") -> Efectivo:
    efectivo = db.session.scalar(for_update(select(Efectivo).where(Efectivo.id == efectivo_id)))
    if efectivo is None:
        raise ValidationProblem(
            "Unknown efectivo.", errors=[field_error(field, "unknown_id", f"efectivo {efectivo_id} does not exist", es=f"El efectivo {efectivo_id} no existe.")]
        )
    return efectivo


# --- patterns ------------------------------------------------------------------------------------


def ocurrencias(inicio: datetime, fin: datetime, repetir: dict[str, Any] | None, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The ranges a shift (or a repeating pattern of it) stands for, or a 422 saying why it cannot be.

    ``cada_horas`` repeats on a fixed cycle (12×36 is a 12 h shift every 48 h); ``dias_semana`` (0 =
    lunes) repeats at the same wall-clock time in ``tz`` on those weekdays, so a rota keeps its hours
    across daylight-saving changes.
    """
    _check_range(inicio, fin, "body")
    duracion = fin - inicio
    if duracion > MAX_TURNO:
        raise _invalid("body.fin", f"a turno lasts at most {_hours(MAX_TURNO)} hours", "duration", f"Un turno dura como máximo {_horas(MAX_TURNO)} horas.")
    if not repetir:
        return [(inicio, fin)]
    hasta: datetime = repetir["hasta"]
    if hasta <= inicio:
        raise _invalid("body.repetir.hasta", "must be after inicio", "range", "La repetición debe acabar después del inicio.")
    if hasta - inicio > MAX_HORIZONTE:
        raise _invalid(
            "body.repetir.hasta", f"a pattern spans at most {MAX_HORIZONTE.days} days", "range", f"Una repetición abarca como máximo {MAX_HORIZONTE.days} días."
        )
    out: list[tuple[datetime, datetime]] = []
    if repetir.get("cada_horas"):
        paso = timedelta(hours=int(repetir["cada_horas"]))
        if paso < duracion:
            raise _invalid(
                "body.repetir.cada_horas",
                "shorter than the shift: its occurrences would overlap",
                "pattern",
                "La repetición es más corta que el turno: los turnos se solaparían.",
            )
        start = inicio
        while start < hasta:
            out.append((start, start + duracion))
            start += paso
            if len(out) > MAX_OCURRENCIAS:
                break
    else:
        out = _semanal(inicio, fin, hasta, set(repetir.get("dias_semana") or []), tz)
        # Kept on the wall clock, an occurrence spanning the autumn change lasts an hour more in real time: the
        # cap holds for every shift stored, as it does for one edited alone.
        for start, end in out:
            real = end.astimezone(UTC) - start.astimezone(UTC)  # between two times of one zone Python subtracts wall clocks
            if real > MAX_TURNO:
                raise _invalid(
                    "body.repetir.dias_semana",
                    f"the shift starting {start.astimezone(tz).date().isoformat()} lasts {_hours(real)} hours across the daylight-saving change; "
                    f"a turno lasts at most {_hours(MAX_TURNO)} hours",
                    "duration",
                    f"El turno del {start.astimezone(tz).date().isoformat()} duraría {_horas(real)} horas con el cambio de hora; "
                    f"un turno dura como máximo {_horas(MAX_TURNO)} horas.",
                )
    if not out:
        raise _invalid("body.repetir", "the pattern produces no shift before hasta", "pattern", "La repetición no da ningún turno antes de su fin.")
    if len(out) > MAX_OCURRENCIAS:
        raise _invalid(
            "body.repetir.hasta", f"a pattern creates at most {MAX_OCURRENCIAS} shifts at once", "pattern", f"Como máximo {MAX_OCURRENCIAS} turnos de una vez."
        )
    return out


def _semanal(inicio: datetime, fin: datetime, hasta: datetime, dias: set[int], tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """Weekday occurrences: each starts at the local wall-clock time ``inicio`` shows in ``tz`` and ends at the
    time ``fin`` shows, as many local days later, so a 22:00-06:00 night stays 22:00-06:00 (7 h on the spring
    night, 9 h on the autumn one). Adding the first one's real duration instead made every occurrence an hour
    off once a daylight-saving change lay between its two ends. The occurrence on ``inicio``'s own day is
    exactly ``inicio``-``fin``; a local time the clock skips or shows twice is read as ``_reloj`` says.
    """
    local_inicio, local_fin = inicio.astimezone(tz), fin.astimezone(tz)
    # On the wall clock, not in real time: the span the rota repeats.
    span = local_fin.replace(tzinfo=None) - local_inicio.replace(tzinfo=None)
    if span <= timedelta(0):
        # Only a shift inside the autumn repeated hour can end at an earlier wall-clock time than it starts.
        raise _invalid(
            "body.fin",
            "ends at an earlier wall-clock time than it starts (across the autumn change): it cannot repeat by weekday",
            "pattern",
            "Acaba a una hora de reloj anterior a la de inicio (cambio de hora de otoño): no puede repetirse por días.",
        )
    # Both measures: the wall-clock span is what other weeks get, and a first occurrence whose end is the
    # second showing of a repeated hour is longer in real time than on the wall, and could reach the next day's.
    if max(span, fin - inicio) > timedelta(hours=24) and len(dias) > 1:
        raise _invalid(
            "body.repetir.dias_semana",
            "a shift longer than 24 h cannot repeat on several weekdays",
            "pattern",
            "Un turno de más de 24 h no puede repetirse varios días.",
        )
    hora_inicio, hora_fin = local_inicio.time(), local_fin.time()
    dias_fin = timedelta(days=(local_fin.date() - local_inicio.date()).days)
    out: list[tuple[datetime, datetime]] = []
    day: date = local_inicio.date()
    last = hasta.astimezone(tz).date()
    while day <= last and len(out) <= MAX_OCURRENCIAS:
        if day.weekday() in dias:
            if day == local_inicio.date():
                start, end = local_inicio, local_fin
            else:
                start, end = _reloj(day, hora_inicio, tz), _reloj(day + dias_fin, hora_fin, tz)
            # end == start only when the whole shift falls in the hour the clock skips: it does not happen that night.
            if inicio <= start < hasta and start < end:
                out.append((start, end))
        day += timedelta(days=1)
    return out


def _reloj(dia: date, hora: time, tz: ZoneInfo) -> datetime:
    """The instant the clock in ``tz`` first shows ``hora`` on ``dia`` (README "Turnos").

    A time shown twice (autumn) is its first showing, still in summer time; a time the clock skips
    (spring) is the moment of the jump, the first instant the clock shows a later time. Both keep the
    mapping from wall-clock time to instant non-decreasing, so no occurrence comes out reversed and two
    occurrences at most 24 wall-clock hours apart never overlap.
    """
    wall = datetime.combine(dia, hora.replace(fold=0))
    first = wall.replace(tzinfo=tz)
    after = first.astimezone(UTC)
    if after.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # Skipped: the jump lies between reading ``wall`` with the offset after the change and with the one
    # before it. zoneinfo does not expose transitions, so find the first second that shows ``wall`` or later.
    lo, hi = int(wall.replace(fold=1, tzinfo=tz).timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, tz)


def _bound(value: datetime | None) -> datetime:
    assert value is not None  # ck_*_periodo_finito: stored ranges have both bounds
    return value


def _invalid(field: str, message: str, kind: str, es: str | None = None, *, what: str = "turno") -> ValidationProblem:
    """A 422 for one field of a turno (or ``what`` else); ``es`` is the Spanish the planning form shows beside it (else
    the wording for ``kind``)."""
    return ValidationProblem(f"The {what} is invalid.", errors=[field_error(field, kind, message, es=es)])


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g}"


def _horas(span: timedelta) -> str:
    return _hours(span).replace(".", ",")  # 72,5 horas: the decimal comma of Spanish


def _check_range(inicio: datetime, fin: datetime, where: str, what: str = "turno") -> None:
    if fin <= inicio:
        raise _invalid(f"{where}.fin", "must be after inicio", "range", what=what)


# --- turnos --------------------------------------------------------------------------------------


def comprobar_turnos(actor: Usuario, data: dict[str, Any]) -> tuple[list[tuple[datetime, datetime]], list[Choque]]:
    """Dry run of ``create_turnos`` (supervisor+): the ranges it would create and what is in their way."""
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Planning turnos")
    rangos = ocurrencias(data["inicio"], data["fin"], data.get("repetir"), zona())
    efectivo = db.session.get(Efectivo, data["efectivo_id"])
    if efectivo is None:
        raise ValidationProblem(
            "Unknown efectivo.",
            errors=[
                field_error(
                    "body.efectivo_id", "unknown_id", f"efectivo {data['efectivo_id']} does not exist", es=f"El efectivo {data['efectivo_id']} no existe."
                )
            ],
        )
    _require_active(efectivo)  # as create_turnos would answer
    return rangos, choques(data["efectivo_id"], rangos, skip_turno=data.get("skip_turno") or 0)


def create_turnos(actor: Usuario, data: dict[str, Any]) -> list[Turno]:
    """One shift, or every occurrence of a repeating pattern, atomically (supervisor+).

    Raises Forbidden, ValidationProblem (bad range or pattern, unknown efectivo), Conflict (409) naming
    the first existing turno or licencia any occurrence overlaps — then nothing is created.
    """
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Creating turnos")
    rangos = ocurrencias(data["inicio"], data["fin"], data.get("repetir"), zona())
    efectivo = _lock_efectivo(data["efectivo_id"])
    _require_active(efectivo)
    subject = "The turno" if len(rangos) == 1 else f"The pattern ({len(rangos)} turnos)"
    found = choques(efectivo.id, rangos)
    if found:
        _raise_conflict(subject, found)
    serie = uuid.uuid4() if len(rangos) > 1 else None
    common = {
        "efectivo_id": efectivo.id,
        "unidad": data.get("unidad") or efectivo.unidad,
        "tipo": str(data.get("tipo") or TipoTurno.SERVICIO),
        "serie": serie,
        "notas": data.get("notas"),
        "creado_por_usuario_id": actor.id,
    }
    created: list[Turno] = []
    with refused_as_conflict(subject, lambda: choques(efectivo.id, rangos)):
        # One multi-row INSERT (insertmanyvalues) instead of one statement per occurrence.
        created = list(db.session.scalars(insert(Turno).returning(Turno), [common | {"periodo": periodo(s, e)} for s, e in rangos]))
    items = [_event_item(turno_dict(t)) for t in created]
    _record(TurnosCreated(**_whose(efectivo), serie=str(serie) if serie else None, turnos=items), "turno", created[0].id if len(created) == 1 else None, actor)
    return created


def _load_turno(turno_id: int, *, lock: bool = False) -> Turno:
    query = select(Turno).where(Turno.id == turno_id)
    turno = db.session.scalar(for_update(query) if lock else query)
    if turno is None:
        raise NotFound(f"Turno {turno_id} does not exist.")
    return turno


def get_turno(actor: Usuario, turno_id: int) -> Turno:
    turno = _load_turno(turno_id)
    efectivo = db.session.get(Efectivo, turno.efectivo_id)
    if not policy.can_read_agenda(actor, efectivo.usuario_id if efectivo else None):
        raise Forbidden("You may only see your own turnos.")
    return turno


def _visible_efectivo_ids(actor: Usuario) -> Any:
    """None for supervisors (everyone), else a subquery of the actor's own efectivo."""
    if policy.is_supervisor(actor):
        return None
    return select(Efectivo.id).where(Efectivo.usuario_id == actor.id).scalar_subquery()


def list_turnos(
    actor: Usuario, *, efectivo_id: int | None, unidad: str | None, desde: datetime | None, hasta: datetime | None, limit: int, offset: int
) -> tuple[list[Turno], int]:
    """Turnos overlapping [desde, hasta), by start. Efectivos see only their own."""
    return _agenda_page(Turno, actor, efectivo_id, desde, hasta, limit, offset, *([Turno.unidad == unidad] if unidad else []))


def _overlaps(column: Any, desde: datetime | None, hasta: datetime | None) -> Any:
    return column.op("&&")(func.tstzrange(desde, hasta, "[)"))


def update_turno(actor: Usuario, turno_id: int, changes: dict[str, Any], expected_version: int | None) -> Turno:
    """Move or edit a shift (supervisor+): new inicio/fin, tipo, unidad, notas, or another efectivo.

    Raises NotFound, Forbidden, PreconditionFailed, ValidationProblem, Conflict naming the clash.
    """
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Editing turnos")
    turno = _load_turno(turno_id)
    # Lock the efectivo(s) before the turno so every agenda writer takes locks in the same order.
    target_id = changes.get("efectivo_id") or turno.efectivo_id
    for eid in sorted({turno.efectivo_id, target_id}):
        _lock_efectivo(eid)
    turno = _load_turno(turno_id, lock=True)
    check_version(turno.version, expected_version, "turno")
    inicio: datetime = changes.get("inicio") or _bound(turno.periodo.lower)
    fin: datetime = changes.get("fin") or _bound(turno.periodo.upper)
    values: dict[str, Any] = {name: _stored(name, changes[name]) for name in ("tipo", "unidad", "notas") if name in changes}
    if (inicio, fin, target_id) == (_bound(turno.periodo.lower), _bound(turno.periodo.upper), turno.efectivo_id) and changes_nothing(turno, values):
        return turno  # as every PATCH: nothing changes, so no new version for other editors (their If-Match holds) and no event
    _check_range(inicio, fin, "body")
    if fin - inicio > MAX_TURNO:
        raise _invalid("body.fin", f"a turno lasts at most {_hours(MAX_TURNO)} hours", "duration", f"Un turno dura como máximo {_horas(MAX_TURNO)} horas.")
    efectivo = db.session.get(Efectivo, target_id)
    assert efectivo is not None  # locked above
    moved_from: dict[str, Any] = {}
    if target_id != turno.efectivo_id:
        _require_active(efectivo)  # as a new turno; a deactivated efectivo's own turnos may still be edited
        former = db.session.get(Efectivo, turno.efectivo_id)  # locked above
        moved_from = {"antes_usuario_id": former.usuario_id} if former is not None and former.usuario_id is not None else {}
    before = _event_item(turno_dict(turno))
    found = choques(target_id, [(inicio, fin)], skip_turno=turno.id)
    if found:
        _raise_conflict(f"Turno {turno.id}", found)
    with refused_as_conflict(f"Turno {turno.id}", lambda: choques(target_id, [(inicio, fin)], skip_turno=turno.id)):
        turno.periodo = periodo(inicio, fin)
        turno.efectivo_id = target_id
        for name, value in values.items():
            setattr(turno, name, value)
        turno.version += 1
    _record(TurnoUpdated(**_whose(efectivo), **moved_from, before=before, turno=_event_item(turno_dict(turno))), "turno", turno.id, actor)
    return turno


def _stored(name: str, value: Any) -> Any:
    return str(value) if name == "tipo" and value is not None else value


def delete_turno(actor: Usuario, turno_id: int, expected_version: int | None) -> None:
    """Remove a shift (supervisor+). Bookings inside it stay; they become flagged as outside a shift."""
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Deleting turnos")
    turno = _load_turno(turno_id)
    efectivo = _lock_efectivo(turno.efectivo_id)
    turno = _load_turno(turno_id, lock=True)
    check_version(turno.version, expected_version, "turno")
    item = _event_item(turno_dict(turno))
    db.session.delete(turno)
    db.session.flush()
    _record(TurnoDeleted(**_whose(efectivo), turno=item), "turno", turno_id, actor)


# --- licencias -----------------------------------------------------------------------------------


def create_licencia(actor: Usuario, data: dict[str, Any]) -> Licencia:
    """Leave for an efectivo in service (supervisor+). Refused (409) when it overlaps another licencia, a turno or a
    booking, or the efectivo is deactivated.

    Shifts and bookings inside the leave must be moved or removed first: the planner decides who covers them.
    """
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Creating licencias")
    _check_range(data["inicio"], data["fin"], "body", "licencia")
    efectivo = _lock_efectivo(data["efectivo_id"])
    _require_active(efectivo)
    rango = [(data["inicio"], data["fin"])]
    found = choques(efectivo.id, rango, reservas=True)
    if found:
        _raise_conflict("The licencia", found)
    if data["inicio"] <= utcnow() < data["fin"]:
        _refuse_leave_over_open_ended_work(efectivo)
    licencia = Licencia(
        efectivo_id=efectivo.id,
        tipo=str(data.get("tipo") or TipoLicencia.OTRA),
        periodo=periodo(*rango[0]),
        motivo=data.get("motivo"),
        creado_por_usuario_id=actor.id,
    )
    with refused_as_conflict("The licencia", lambda: choques(efectivo.id, rango, reservas=True)):
        db.session.add(licencia)
    _record(LicenciaCreated(**_whose(efectivo), licencia=_event_item(licencia_dict(licencia))), "licencia", licencia.id, actor)
    return licencia


def _refuse_leave_over_open_ended_work(efectivo: Efectivo) -> None:
    """A licencia that covers now, for an efectivo working a tarea without a schedule (an emergency, a tarea
    assigned open-ended): refused, as such an assignment is refused to an efectivo on leave — leave is not
    negotiable, and the planner releases them first. Runs under the efectivo's row lock, as the assignment's own
    check does, so the two cannot both pass. (A licencia starting later is the planner's to cover.)"""
    holding = db.session.execute(
        select(Asignacion.tarea_id, Tarea.codigo)
        .join(Tarea, Tarea.id == Asignacion.tarea_id)
        .where(Asignacion.efectivo_id == efectivo.id, Asignacion.liberado_en.is_(None), Asignacion.periodo.is_(None))
        .limit(1)
    ).first()
    if holding is not None:
        raise Conflict(
            f"Efectivo {efectivo.codigo_interno} is working tarea {holding.codigo} now (assigned without a schedule): release them first.",
            mensaje=f"{efectivo.codigo_interno} está ahora en la tarea {holding.codigo}: retírelo de ella antes de darle una licencia que empieza ya.",
            efectivo_id=efectivo.id,
            tarea_id=holding.tarea_id,
        )


def list_licencias(
    actor: Usuario, *, efectivo_id: int | None, desde: datetime | None, hasta: datetime | None, limit: int, offset: int
) -> tuple[list[Licencia], int]:
    """Licencias overlapping [desde, hasta), by start. Efectivos see only their own."""
    return _agenda_page(Licencia, actor, efectivo_id, desde, hasta, limit, offset)


def _agenda_page(
    model: type[A], actor: Usuario, efectivo_id: int | None, desde: datetime | None, hasta: datetime | None, limit: int, offset: int, *where: Any
) -> tuple[list[A], int]:
    """A page of ``model`` rows ``actor`` may see (efectivos: their own) overlapping [desde, hasta), by start."""
    query = select(model).where(*where)
    own = _visible_efectivo_ids(actor)
    if own is not None:
        query = query.where(model.efectivo_id == own)
    if efectivo_id is not None:
        query = query.where(model.efectivo_id == efectivo_id)
    query = query.where(_overlaps(model.periodo, desde, hasta))
    return paginate(query.order_by(func.lower(model.periodo), model.id), limit, offset)


def delete_licencia(actor: Usuario, licencia_id: int, expected_version: int | None) -> None:
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Deleting licencias")
    licencia = db.session.get(Licencia, licencia_id)
    if licencia is None:
        raise NotFound(f"Licencia {licencia_id} does not exist.")
    efectivo = _lock_efectivo(licencia.efectivo_id)
    locked = db.session.scalar(for_update(select(Licencia).where(Licencia.id == licencia_id)))
    if locked is None:
        raise NotFound(f"Licencia {licencia_id} does not exist.")
    check_version(locked.version, expected_version, "licencia")
    item = _event_item(licencia_dict(locked))
    db.session.delete(locked)
    db.session.flush()
    _record(LicenciaDeleted(**_whose(efectivo), licencia=item), "licencia", licencia_id, actor)


# --- bookings (called by tarea assignment) -------------------------------------------------------


def ventana(tarea: Tarea) -> Range[datetime] | None:
    """The window an assignment to ``tarea`` books: its scheduled [inicio, fin), when it has both."""
    if tarea.inicio_programado is None or tarea.fin_programado is None:
        return None
    return periodo(tarea.inicio_programado, tarea.fin_programado)


_CUBIERTO = text("SELECT coalesce(range_agg(periodo) @> :w, false) FROM turnos WHERE efectivo_id = :e AND periodo && :w").bindparams(
    bindparam("w", type_=TSTZRANGE)
)


def cubierto_por_turnos(efectivo_id: int, window: Range[datetime]) -> bool:
    """True when the efectivo's turnos (together, back to back) cover the whole window."""
    return bool(db.session.scalar(_CUBIERTO, {"e": efectivo_id, "w": window}))


def check_booking(efectivo: Efectivo, tarea: Tarea, window: Range[datetime]) -> bool:
    """Decide a booking of ``efectivo`` for ``window`` on ``tarea``; return whether it falls outside its turnos.

    Refused (409 naming it) when the window overlaps another booking or a licencia; outside the
    efectivo's turnos it is refused when DESPACHO_REQUIERE_SERVICIO is set, else allowed and flagged
    (``fuera_de_turno``) so the planner sees it. The caller holds the efectivo's row lock.
    """
    assert window.lower is not None and window.upper is not None
    found = choques(efectivo.id, [(window.lower, window.upper)], turnos=False, reservas=True, skip_tarea=tarea.id)
    if found:
        first = found[0]
        extra: dict[str, Any] = {"efectivo_id": efectivo.id, "conflicto": first.as_dict()}
        if first.clase == "reserva":
            extra["tarea_id"] = first.id
        raise Conflict(
            f"Efectivo {efectivo.codigo_interno} is already booked: the window overlaps {first.describe()}.",
            mensaje=f"{efectivo.codigo_interno} ya tiene {first.describir()} en ese horario.",
            **extra,
        )
    fuera = not cubierto_por_turnos(efectivo.id, window)
    if fuera and current_app.config.get("DESPACHO_REQUIERE_SERVICIO"):
        raise Conflict(
            f"Efectivo {efectivo.codigo_interno} has no turno covering the tarea's window (DESPACHO_REQUIERE_SERVICIO is on).",
            mensaje=f"{efectivo.codigo_interno} no tiene turno durante la tarea.",
            efectivo_id=efectivo.id,
            fuera_de_turno=True,
        )
    return fuera


def booking_recheck(efectivo_id: int, tarea_id: int, window: Range[datetime] | None) -> list[Choque]:
    if window is None or window.lower is None or window.upper is None:
        return []
    return choques(efectivo_id, [(window.lower, window.upper)], turnos=False, reservas=True, skip_tarea=tarea_id)


def rebook(tarea: Tarea) -> None:
    """The tarea's schedule changed: move its active bookings to the new window (409 if they no longer fit)."""
    window = ventana(tarea)
    rows = db.session.execute(
        for_update(
            select(Asignacion, Efectivo)
            .join(Efectivo, Efectivo.id == Asignacion.efectivo_id)
            .where(Asignacion.tarea_id == tarea.id, Asignacion.liberado_en.is_(None))
            .order_by(Efectivo.id)
        )
    ).all()
    for asignacion, efectivo in rows:
        fuera = check_booking(efectivo, tarea, window) if window is not None else False
        with refused_as_conflict(f"Efectivo {efectivo.codigo_interno}", lambda e=efectivo.id: booking_recheck(e, tarea.id, window)):
            asignacion.periodo = window
            asignacion.fuera_de_turno = fuera


# --- on duty -------------------------------------------------------------------------------------

_EN_SERVICIO_USUARIOS = text(
    """
    SELECT e.usuario_id FROM efectivos e JOIN usuarios u ON u.id = e.usuario_id
     WHERE e.activo AND u.activo AND u.nivel >= :nivel AND e.estado_disponibilidad <> 'no_disponible'
       AND EXISTS (SELECT 1 FROM turnos t WHERE t.efectivo_id = e.id AND t.periodo @> now())
       AND NOT EXISTS (SELECT 1 FROM licencias l WHERE l.efectivo_id = e.id AND l.periodo @> now())
    """
).bindparams(bindparam("nivel"))


def usuarios_en_servicio(nivel_min: Nivel = Nivel.SUPERVISOR) -> set[int]:
    """Usuarios (of at least ``nivel_min``) whose efectivo is on duty now and not set no_disponible by hand:
    who "supervisors on duty" notifications go to."""
    return {int(uid) for uid in db.session.scalars(_EN_SERVICIO_USUARIOS, {"nivel": int(nivel_min)})}


# --- planning week -------------------------------------------------------------------------------


def inicio_semana(dia: date | None, tz: ZoneInfo) -> datetime:
    """Monday 00:00 (wall clock in ``tz``) of the week holding ``dia`` (default: today there)."""
    dia = dia or datetime.now(tz).date()
    lunes = dia - timedelta(days=dia.weekday())
    return datetime.combine(lunes, datetime.min.time(), tz)


_SEMANA_EFECTIVOS = text(
    """
    SELECT e.id, e.codigo_interno, e.nombre, e.unidad, e.estado_disponibilidad,
           EXISTS (SELECT 1 FROM turnos t WHERE t.efectivo_id = e.id AND t.periodo @> now())
             AND NOT EXISTS (SELECT 1 FROM licencias l WHERE l.efectivo_id = e.id AND l.periodo @> now()) AS en_servicio
      FROM efectivos e
     WHERE e.activo AND (CAST(:unidad AS text) IS NULL OR e.unidad = :unidad
           OR EXISTS (SELECT 1 FROM turnos t WHERE t.efectivo_id = e.id AND t.unidad = :unidad AND t.periodo && :w))
     ORDER BY e.unidad NULLS LAST, e.nombre, e.id
    """
).bindparams(bindparam("w", type_=TSTZRANGE))
_SEMANA_TURNOS = text(
    "SELECT id, efectivo_id, unidad, tipo, lower(periodo) AS inicio, upper(periodo) AS fin, serie, notas, version"
    " FROM turnos WHERE efectivo_id = ANY(:ids) AND periodo && :w ORDER BY lower(periodo)"
).bindparams(bindparam("w", type_=TSTZRANGE))
_SEMANA_LICENCIAS = text(
    "SELECT id, efectivo_id, tipo, lower(periodo) AS inicio, upper(periodo) AS fin, motivo, version"
    " FROM licencias WHERE efectivo_id = ANY(:ids) AND periodo && :w ORDER BY lower(periodo)"
).bindparams(bindparam("w", type_=TSTZRANGE))
# A booking is flagged when the efectivo's turnos (merged) do not cover its whole window.
_SEMANA_RESERVAS = text(
    """
    SELECT a.tarea_id, t.codigo, t.titulo, t.estado, a.efectivo_id, lower(a.periodo) AS inicio, upper(a.periodo) AS fin,
           NOT coalesce((SELECT range_agg(tu.periodo) FROM turnos tu WHERE tu.efectivo_id = a.efectivo_id AND tu.periodo && a.periodo)
                        @> a.periodo, false) AS fuera_de_turno
      FROM asignaciones a JOIN tareas t ON t.id = a.tarea_id
     WHERE a.efectivo_id = ANY(:ids) AND a.liberado_en IS NULL AND a.periodo && :w
     ORDER BY lower(a.periodo)
    """
).bindparams(bindparam("w", type_=TSTZRANGE))


def semana(actor: Usuario, unidad: str | None, dia: date | None) -> dict[str, Any]:
    """The planning week of a unidad (supervisor+): its efectivos, their turnos, licencias and bookings."""
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Reading the planning")
    tz = zona()
    desde = inicio_semana(dia, tz)
    hasta = datetime.combine(desde.date() + timedelta(days=7), datetime.min.time(), tz)
    w = periodo(desde, hasta)
    efectivos = [dict(r) for r in db.session.execute(_SEMANA_EFECTIVOS, {"unidad": unidad, "w": w}).mappings()]
    ids = [e["id"] for e in efectivos]
    params = {"ids": ids, "w": w}

    def rows(statement: Any) -> list[dict[str, Any]]:
        return [_event_item(dict(r)) for r in db.session.execute(statement, params).mappings()] if ids else []

    turnos, licencias, reservas = rows(_SEMANA_TURNOS), rows(_SEMANA_LICENCIAS), rows(_SEMANA_RESERVAS)
    return {
        "unidad": unidad,
        "zona_horaria": str(tz),
        "desde": _local_iso(desde),
        "hasta": _local_iso(hasta),
        "efectivos": efectivos,
        "turnos": turnos,
        "licencias": licencias,
        "reservas": reservas,
        "unidades": sorted(u for u in db.session.scalars(select(Efectivo.unidad).where(Efectivo.activo.is_(True)).distinct()) if u),
    }
