"""Import a GRUPO_GAD database (Alembic revision 8a888f8e3bc5) into GAD, streamed in batches.

How it stays safe:

- The source is opened read-only, in one REPEATABLE READ snapshot, and read through server-side cursors:
  memory holds one batch, never a whole table.
- Every imported row gets a ``procedencias`` row (old id -> new id, hash of the source row) in the same
  transaction as the row itself. A batch is one transaction (the caller commits it), so an interrupted run
  leaves whole batches behind, and the next run skips every old id already recorded: resuming and re-running
  are the same operation. A source row whose hash differs from the recorded one is reported as changed and
  never overwritten.
- Rows are checked against GAD's own schemas and constraints before anything is written; a row that breaks
  them is listed with the reason and not imported (rows that depend on it are listed too). GAD's rules are
  never relaxed: the operator fixes the source and runs again, or accepts the skip.
- Each batch writes one event (``import_batch``) into the event log, not one per row: the audit chain
  records where the data came from, and live clients get a handful of frames, not a flood.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid as uuid_lib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import Range

from gad.db_session import allow_idle_transaction
from gad.extensions import db
from gad.models import Asignacion, Efectivo, HistorialEstado, Procedencia, Tarea, Usuario, utcnow
from gad.realtime import events
from gad.schemas.efectivos import EfectivoIn
from gad.schemas.events import ImportBatch, ImportFinished, ImportStarted
from gad.schemas.tareas import TareaIn
from gad.schemas.usuarios import UsuarioIn
from gad.services import efectivos as efectivos_service
from gad.services.turnos import periodo
from gad.text import canonical_dni, canonical_email
from gad.vocab import ESTADOS_ACTIVOS, ESTADOS_FINALES, TIEMPO_MAX, TIEMPO_MIN, Disponibilidad, EstadoTarea

logger = logging.getLogger(__name__)

SISTEMA = "grupo_gad"
KNOWN_REVISION = "8a888f8e3bc5"
REQUIRED_TABLES = ("alembic_version", "usuarios", "efectivos", "tareas", "tarea_efectivos", "historial_estados")
ENTIDADES = ("usuario", "efectivo", "tarea", "historial")
# Import events reach live clients following topic "sistema" as a handful of frames (one per batch).
_EVENT: dict[str, Any] = {"topic": "sistema", "entity_type": "importacion", "entity_id": None, "actor_id": None}
# The table's id sequence set to at least ``top`` (never back): ids up to it are then never handed out by GAD.
_PAST_OLD_IDS = text(
    "SELECT setval(seq, greatest(CAST(:top AS bigint), coalesce(pg_sequence_last_value(seq), 1)))"
    " FROM (SELECT CAST(pg_get_serial_sequence(:table, 'id') AS regclass) AS seq) AS q"
)

# The old database stores enum *names* (upper-case English); GAD stores the API's lower-case values.
NIVELES = {"LEVEL_1": 1, "LEVEL_2": 2, "LEVEL_3": 3}
ESTADOS = {
    "PROGRAMMED": EstadoTarea.PROGRAMADA.value,
    "IN_PROGRESS": EstadoTarea.EN_CURSO.value,
    "COMPLETED": EstadoTarea.FINALIZADA.value,
    "CANCELLED": EstadoTarea.CANCELADA.value,
    "PAUSED": EstadoTarea.PAUSADA.value,
}
PRIORIDADES = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "URGENT": 4, "CRITICAL": 5}
TIPOS = {name: name.lower() for name in ("PATRULLAJE", "INVESTIGACION", "VIGILANCIA", "INTERVENCION", "ADMINISTRATIVA", "ENTRENAMIENTO")}
DISPONIBILIDADES = {name: name.lower() for name in ("DISPONIBLE", "EN_TAREA", "FUERA_SERVICIO", "NO_DISPONIBLE")}
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# Real start/end times later than this much after "now" cannot have happened.
FUTURE_TOLERANCE = timedelta(minutes=5)
_ACTIVOS = {estado.value for estado in ESTADOS_ACTIVOS}


class SourceRefused(Exception):
    """The source is not a GRUPO_GAD database at the one revision this importer knows."""


class InvalidRowsFound(Exception):
    """A batch holds rows that cannot be imported and the operator did not ask to skip them."""


@dataclass
class Problem:
    entidad: str
    old_id: int
    reasons: list[str]

    def line(self) -> str:
        return f"{self.entidad} {self.old_id}: " + "; ".join(self.reasons)


@dataclass
class Disagreement:
    """A tarea whose two assignment stores (tarea_efectivos, efectivos_asignados) disagree."""

    tarea_old_id: int
    only_table: list[int]
    only_array: list[int]

    def line(self) -> str:
        parts = []
        if self.only_table:
            parts.append(f"only in tarea_efectivos: {self.only_table}")
        if self.only_array:
            parts.append(f"only in efectivos_asignados: {self.only_array}")
        return f"tarea {self.tarea_old_id}: " + "; ".join(parts) + " (imported: the union)"


@dataclass
class _Batch:
    """One batch of source rows: their hashes, which were never imported, and the problems count before it."""

    rows: list[dict[str, Any]]
    hashes: list[str]
    fresh: list[int]
    problems_before: int


@dataclass
class EntityCounts:
    source: int = 0
    imported: int = 0
    unchanged: int = 0
    changed: int = 0
    skipped: int = 0


@dataclass
class Report:
    dry_run: bool
    source: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, EntityCounts] = field(default_factory=lambda: {e: EntityCounts() for e in ENTIDADES})
    problems: list[Problem] = field(default_factory=list)
    changed: list[tuple[str, int]] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    asignaciones: int = 0
    inactive_deleted: int = 0
    inactive_unverified: int = 0
    inactive_blocked: int = 0
    # (entidad, old id, new id) of rows whose GRUPO_GAD id GAD already used.
    renumbered: list[tuple[str, int, int]] = field(default_factory=list)
    # (efectivo's new id, codigo_interno, state imported, state GAD's rule gives it).
    settled: list[tuple[int, str, str, str]] = field(default_factory=list)
    interrupted: bool = False
    stopped: str | None = None
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The figures written into the event log when the run ends."""
        return {
            "dry_run": self.dry_run,
            "counts": {e: vars(c) for e, c in self.counts.items()},
            "asignaciones": self.asignaciones,
            "renumbered": len(self.renumbered),
            "disponibilidad_settled": len(self.settled),
            "problems": len(self.problems),
            "changed": len(self.changed),
            "disagreements": len(self.disagreements),
            "interrupted": self.interrupted,
            "stopped": self.stopped is not None,
        }

    def lines(self) -> list[str]:
        verb = "would import" if self.dry_run else "imported"
        out = [f"GRUPO_GAD import {'(dry run: nothing written) ' if self.dry_run else ''}from {self.source.get('database')} at revision {KNOWN_REVISION}"]
        for entidad, c in self.counts.items():
            out.append(
                f"  {entidad:<10} source {c.source:>7} · {verb} {c.imported:>7} · already imported {c.unchanged:>7}"
                f" · changed since import {c.changed:>5} · cannot import {c.skipped:>5}"
            )
        out.append(f"  asignaciones {verb}: {self.asignaciones}")
        out.append(
            f"  usuarios imported inactive: {self.inactive_deleted} deleted in GRUPO_GAD, {self.inactive_unverified} never verified,"
            f" {self.inactive_blocked} blocked until a date still to come"
        )
        out.append(f"Ids GAD already used, given new ones ({len(self.renumbered)}; every other row keeps its GRUPO_GAD id):")
        out.extend(f"  {entidad} {old_id} -> {new_id}" for entidad, old_id, new_id in self.renumbered)
        out.append(f"Availability set by GAD's rule from the assignments imported ({len(self.settled)}):")
        out.extend(f"  efectivo {new_id} ({codigo}): {antes} -> {ahora}" for new_id, codigo, antes, ahora in self.settled)
        out.append(f"Rows that cannot be imported ({len(self.problems)}):")
        out.extend(f"  {p.line()}" for p in self.problems)
        if self.dry_run and self.problems:
            out.append("  (an import without --skip-invalid stops at the first batch holding one of these rows)")
        out.append(f"Source rows changed since they were imported, not overwritten ({len(self.changed)}):")
        out.extend(f"  {entidad} {old_id}" for entidad, old_id in self.changed)
        out.append(f"Assignment stores that disagree ({len(self.disagreements)}):")
        out.extend(f"  {d.line()}" for d in self.disagreements)
        if self.stopped:
            out.append(f"STOPPED: {self.stopped}")
        if self.interrupted:
            out.append("INTERRUPTED: every committed batch is kept; run the same command again to resume.")
        out.append(f"Done in {self.elapsed_s:.1f} s.")
        return out


def normalise_url(url: str) -> str:
    """psycopg2 wants ``postgresql://``; accept what Fly and SQLAlchemy hand out."""
    for prefix in ("postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def open_source(url: str) -> psycopg2.extensions.connection:
    """A read-only connection in one consistent snapshot; refuses anything but GRUPO_GAD at KNOWN_REVISION."""
    try:
        conn = psycopg2.connect(normalise_url(url), connect_timeout=10, application_name="gad-import-grupo-gad")
    except psycopg2.Error as exc:
        raise SourceRefused(f"cannot connect to the source database: {str(exc).strip()}") from None
    # READ ONLY: PostgreSQL itself refuses any write, whatever this code does.
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        check_source(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def check_source(conn: psycopg2.extensions.connection) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT " + ", ".join(f"to_regclass('public.{t}') IS NOT NULL" for t in REQUIRED_TABLES))
        present = cur.fetchone() or ()
        missing = [t for t, ok in zip(REQUIRED_TABLES, present, strict=True) if not ok]
        if missing:
            raise SourceRefused(f"not a GRUPO_GAD database: table(s) {', '.join(missing)} missing")
        labels: set[str] = set()
        if _has_type(cur, "estado_tarea"):
            cur.execute("SELECT enum_range(NULL::estado_tarea)::text[]")
            labels = set(cur.fetchone()[0])
        if labels != set(ESTADOS):
            raise SourceRefused("not a GRUPO_GAD database: enum estado_tarea missing or with other labels")
        cur.execute("SELECT version_num FROM alembic_version")
        versions = [row[0] for row in cur.fetchall()]
        if versions != [KNOWN_REVISION]:
            raise SourceRefused(
                f"GRUPO_GAD database at unknown migration revision {', '.join(versions) or '(none)'}; this importer reads revision {KNOWN_REVISION} only"
            )


def _has_type(cur: Any, name: str) -> bool:
    cur.execute("SELECT to_regtype(%s) IS NOT NULL", (f"public.{name}",))
    return bool(cur.fetchone()[0])


def _utc(value: datetime | None) -> datetime | None:
    """``timestamp without time zone`` columns of the old database hold UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _core(model: type[Any]) -> Table:
    """The model's table: Core inserts skip the ORM's per-row bookkeeping (nothing here needs objects)."""
    table: Table = model.__table__
    return table


def row_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()


def _errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "row"
        out.append(f"{where}: {err['msg']}")
    return out


def _validate(schema: type[BaseModel], values: dict[str, Any], reasons: list[str]) -> BaseModel | None:
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        reasons.extend(_errors(exc))
        return None


def _extra(value: Any, **provenance: Any) -> dict[str, Any]:
    """The old JSON column (normally an object) with where the row came from added under ``importado_de``."""
    base = value if isinstance(value, dict) else ({} if value is None else {"grupo_gad": value})
    return base | {"importado_de": {"sistema": SISTEMA, **provenance}}


def _notas_text(notas: Any) -> str | None:
    """The old ``notas`` is JSON; GAD keeps text. A string stays as is, anything else non-empty as JSON."""
    if notas in (None, "", [], {}):
        return None
    if isinstance(notas, str):
        return notas
    return json.dumps(notas, ensure_ascii=False, sort_keys=True)


Progress = Callable[[str, int, int, float, float | None], None]


class Importer:
    """One run. ``end_batch`` is called after each batch has been flushed: the command commits there (or,
    in a dry run, does nothing and rolls everything back at the end)."""

    def __init__(
        self, source: psycopg2.extensions.connection, *, dry_run: bool, skip_invalid: bool, batch_size: int, end_batch: Callable[[], None], progress: Progress
    ) -> None:
        self.source = source
        self.dry_run = dry_run
        self.skip_invalid = skip_invalid or dry_run
        self.batch_size = batch_size
        self.end_batch = end_batch
        self.progress = progress
        self.report = Report(dry_run=dry_run)
        # Old ids that this run could not import, so dependants say why instead of "does not exist".
        self.skipped: dict[str, set[int]] = {e: set() for e in ENTIDADES}
        self.now = utcnow()
        self._started = time.monotonic()
        self._done = 0
        self._total = 0
        # What each efectivo's active assignments hold, as GAD's assignment rule sees them (``_booking_clash``): the
        # windows booked by tareas with a schedule, and the one tarea without a schedule it may hold.
        self.booked: dict[int, list[tuple[datetime, datetime, str]]] = {}
        self.unscheduled: dict[int, str] = {}
        self.source_max_id: dict[str, int] = {}  # by table

    # --- the run ----------------------------------------------------------------------------------

    def run(self) -> Report:
        """Every phase in dependency order. Stops (report.stopped) at a batch with rows that cannot be
        imported unless skipping was asked for; that batch is left for the caller to roll back."""
        self._describe_source()
        if not self.dry_run:
            events.record(db.session(), ImportStarted(sistema=SISTEMA, **self.report.source), **_EVENT)
            self.end_batch()
        # The transaction the holds are read in stays open while the source is scanned for near-duplicates,
        # which takes as long as the source makes it (it holds no lock a writer needs).
        allow_idle_transaction()
        for eid, window, label in db.session.execute(
            select(Asignacion.efectivo_id, Asignacion.periodo, Tarea.codigo)
            .join(Tarea, Tarea.id == Asignacion.tarea_id)
            .where(Asignacion.liberado_en.is_(None))
        ):
            self._hold(eid, window, f"GAD tarea {label}")
        try:
            self._usuarios()
            self._efectivos()
            self._tareas()
            self._historial()
            self._settle_disponibilidad()
        except InvalidRowsFound as exc:
            self.report.stopped = str(exc)
        finally:
            self.report.elapsed_s = time.monotonic() - self._started
        return self.report

    def record_finished(self) -> None:
        """The closing event of a real run (also after a stop or an interruption), for the caller to commit."""
        events.record(db.session(), ImportFinished(sistema=SISTEMA, **self.report.summary()), **_EVENT)

    def _describe_source(self) -> None:
        with self.source.cursor() as cur:
            cur.execute("SELECT current_database(), inet_server_addr()::text, inet_server_port()")
            database, host, port = cur.fetchone()
            counts = {}
            for entidad, table in (("usuario", "usuarios"), ("efectivo", "efectivos"), ("tarea", "tareas"), ("historial", "historial_estados")):
                cur.execute(f"SELECT count(*), coalesce(max(id), 0) FROM {table}")
                count, top = cur.fetchone()
                counts[entidad] = int(count)
                self.source_max_id[table] = int(top)
                self.report.counts[entidad].source = counts[entidad]
        self._total = sum(counts.values())
        self.report.source = {"database": database, "host": host, "port": port, "revision": KNOWN_REVISION, "rows": counts}

    def _stream(self, name: str, sql: str) -> Iterator[list[dict[str, Any]]]:
        """Batches from a server-side cursor: only ``batch_size`` rows are ever in memory."""
        with self.source.cursor(name=f"gad_import_{name}", cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.itersize = self.batch_size
            cur.execute(sql)
            while rows := cur.fetchmany(self.batch_size):
                yield [dict(r) for r in rows]

    def _batches(self, entidad: str, table: str, sql: str, prepare: Callable[[list[dict[str, Any]]], None] | None = None) -> Iterator[_Batch]:
        """Batches of ``table``'s rows (``prepare`` completes them before hashing), triaged against earlier runs."""
        for rows in self._stream(table, sql):
            allow_idle_transaction()  # each batch's transaction waits on the source between its statements
            problems_before = len(self.report.problems)
            if prepare is not None:
                prepare(rows)
            hashes = [row_hash(r) for r in rows]
            yield _Batch(rows, hashes, self._triage(entidad, rows, hashes), problems_before)

    def _known(self, entidad: str, old_ids: list[int]) -> dict[int, tuple[int, str]]:
        if not old_ids:
            return {}
        rows = db.session.execute(
            select(Procedencia.old_id, Procedencia.new_id, Procedencia.source_hash).where(
                Procedencia.sistema == SISTEMA, Procedencia.entidad == entidad, Procedencia.old_id.in_(old_ids)
            )
        )
        return {int(o): (int(n), h) for o, n, h in rows}

    def _ref(self, entidad: str, old_id: int | None, known: dict[int, tuple[int, str]], what: str, reasons: list[str]) -> int | None:
        """The new id of a referenced row, or a reason why the reference cannot be followed."""
        if old_id is None:
            return None
        if old_id in known:
            return known[old_id][0]
        if old_id in self.skipped[entidad]:
            reasons.append(f"{what} references {entidad} {old_id}, which cannot be imported")
        else:
            reasons.append(f"{what} references {entidad} {old_id}, which does not exist in the source (dangling reference)")
        return None

    def _triage(self, entidad: str, rows: list[dict[str, Any]], hashes: list[str]) -> list[int]:
        """Indexes of rows never imported; already-imported ones are counted unchanged or changed."""
        known = self._known(entidad, [r["id"] for r in rows])
        fresh = []
        counts = self.report.counts[entidad]
        for index, (row, digest) in enumerate(zip(rows, hashes, strict=True)):
            seen = known.get(row["id"])
            if seen is None:
                fresh.append(index)
            elif seen[1] == digest:
                counts.unchanged += 1
            else:
                counts.changed += 1
                self.report.changed.append((entidad, row["id"]))
        return fresh

    def _reject(self, entidad: str, old_id: int, reasons: list[str]) -> None:
        self.report.problems.append(Problem(entidad, old_id, reasons))
        self.report.counts[entidad].skipped += 1
        self.skipped[entidad].add(old_id)

    def _finish_batch(self, entidad: str, batch: _Batch, olds: list[tuple[int, str]], new_ids: list[int]) -> None:
        """Record provenance (``olds``: old id and hash of each row inserted as ``new_ids``) and one event for
        the batch, then hand it to the caller to commit."""
        if len(self.report.problems) > batch.problems_before and not self.skip_invalid:
            first = self.report.problems[batch.problems_before]
            raise InvalidRowsFound(f"{first.line()} — fix the source and run again, or pass --skip-invalid to import without such rows")
        inserted = [(o, n, h) for (o, h), n in zip(olds, new_ids, strict=True)]
        if inserted:
            db.session.execute(
                insert(_core(Procedencia)),
                [{"sistema": SISTEMA, "entidad": entidad, "old_id": o, "new_id": n, "source_hash": h, "imported_at": self.now} for o, n, h in inserted],
            )
            self.report.counts[entidad].imported += len(inserted)
            old_ids = [o for o, _ in olds]
            announced = ImportBatch(
                sistema=SISTEMA,
                entidad=entidad,
                rows=len(inserted),
                old_ids=[min(old_ids), max(old_ids)],
                new_ids=[min(new_ids), max(new_ids)],
            )
            events.record(db.session(), announced, **_EVENT)
        db.session.flush()
        self.end_batch()
        self._done += len(batch.rows)
        elapsed = time.monotonic() - self._started
        rate = self._done / elapsed if elapsed > 0 else 0.0
        left = (self._total - self._done) / rate if rate > 0 else None
        self.progress(entidad, self._done, self._total, rate, left)

    def _insert(self, model: type[Any], values: list[dict[str, Any]], old_ids: list[int] | None = None) -> list[int]:
        """Insert the rows and return their new ids, in order. With ``old_ids`` (the rows clients of GRUPO_GAD name
        by id: usuarios, efectivos, tareas) each row keeps its old id unless GAD already has a row with it; those get
        a new one, listed in the report. Otherwise a client still holding an old id would read another record."""
        if not values:
            return []
        table = model.__table__
        if old_ids is None:
            result = db.session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), values)
            return [int(r[0]) for r in result]
        # First the id counter moves past every old id (a dry run's too: ids are not data, and GAD serving meanwhile
        # must not hand out an id kept here; a row given a new one does not take a later batch's), then the ids GAD
        # has are seen, then the rows go in.
        db.session.execute(_PAST_OLD_IDS, {"table": table.name, "top": self.source_max_id[table.name]})
        taken = set(db.session.scalars(select(table.c.id).where(table.c.id.in_(old_ids))))
        kept = [row | {"id": old_id} for row, old_id in zip(values, old_ids, strict=True) if old_id not in taken]
        if kept:
            db.session.execute(insert(table), kept)
        fresh = iter(self._insert(model, [row for row, old_id in zip(values, old_ids, strict=True) if old_id in taken]))
        new_ids = [next(fresh) if old_id in taken else old_id for old_id in old_ids]
        entidad = {"usuarios": "usuario", "efectivos": "efectivo", "tareas": "tarea"}[table.name]
        self.report.renumbered.extend((entidad, old_id, new_id) for old_id, new_id in zip(old_ids, new_ids, strict=True) if old_id != new_id)
        return new_ids

    # --- usuarios ---------------------------------------------------------------------------------

    def _near_duplicates(self, table: str, column: str, normalise: Callable[[str], str]) -> dict[int, list[tuple[int, str]]]:
        """Source rows whose ``column`` is unique as GRUPO_GAD stored it (case and surrounding spaces included) but
        not once GAD has normalised it as its schemas do: old id -> the other rows of its group. Neither is
        imported: which of them is the person is the operator's call. Streamed; only the groups are kept."""
        groups: dict[str, list[tuple[int, str]]] = {}
        with self.source.cursor(name=f"gad_import_near_{table}_{column}") as cur:
            cur.itersize = self.batch_size
            cur.execute(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY id")
            for old_id, value in cur:
                groups.setdefault(normalise(value), []).append((old_id, value))
        return {old_id: [o for o in group if o[0] != old_id] for group in groups.values() if len(group) > 1 for old_id, _ in group}

    def _usuarios(self) -> None:
        same_email = self._near_duplicates("usuarios", "email", canonical_email)
        same_dni = self._near_duplicates("usuarios", "dni", canonical_dni)
        sql = (
            "SELECT id, uuid::text AS uuid, dni, nombre, apellido, email, telefono, telegram_id, nivel::text AS nivel, hashed_password,"
            " verificado, ultimo_acceso, intentos_fallidos, bloqueado_hasta, extra_data, created_at, updated_at, deleted_at"
            " FROM usuarios ORDER BY id"
        )
        for batch in self._batches("usuario", "usuarios", sql):
            rows, hashes, fresh = batch.rows, batch.hashes, batch.fresh
            candidates = [rows[i] for i in fresh]
            taken = self._taken_usuario_fields(candidates)
            values, olds = [], []
            for index in fresh:
                row = rows[index]
                reasons: list[str] = []
                for other_id, other_email in same_email.get(row["id"], []):
                    reasons.append(
                        f"e-mail {row['email']!r} differs only in case, surrounding spaces or character form from usuario {other_id}"
                        f" ({other_email!r}); GAD e-mails are case-insensitive, trimmed and NFKC-normalised"
                    )
                for other_id, other_dni in same_dni.get(row["id"], []):
                    reasons.append(
                        f"dni {row['dni']!r} differs only in case, spaces, separators or character form from usuario {other_id} ({other_dni!r});"
                        " GAD keeps one spelling of a DNI"
                    )
                nivel = NIVELES.get(row["nivel"])
                if nivel is None:
                    reasons.append(f"unknown nivel {row['nivel']!r}")
                checked = _validate(
                    UsuarioIn,
                    {
                        "email": row["email"],
                        "password": "-",  # the hash is carried over; only the other fields are checked here
                        "dni": row["dni"],
                        "nombre": row["nombre"],
                        "apellido": row["apellido"],
                        "telefono": row["telefono"],
                        "telegram_id": row["telegram_id"],
                        "nivel": nivel or 1,
                        "verificado": row["verificado"],
                    },
                    reasons,
                )
                if not str(row["hashed_password"] or "").startswith(BCRYPT_PREFIXES):
                    reasons.append("hashed_password is not a bcrypt hash")
                if checked is not None:
                    data = checked.model_dump()
                    for what, value in (("e-mail", data["email"]), ("dni", data["dni"]), ("telegram_id", data["telegram_id"]), ("uuid", row["uuid"])):
                        if value is not None and (what, value) in taken:
                            reasons.append(f"{what} {value!r} is already used by GAD usuario {taken[(what, value)]}")
                if reasons or checked is None:
                    self._reject("usuario", row["id"], reasons)
                    continue
                deleted = row["deleted_at"] is not None
                unverified = not row["verificado"]
                bloqueado_hasta = _utc(row["bloqueado_hasta"])
                blocked = bloqueado_hasta is not None and bloqueado_hasta > self.now
                # GAD lets in only active usuarios: a usuario the old system kept unverified, or had locked out
                # until a date still to come (GAD's own lockouts do not read that column), is imported inactive,
                # for an administrador to check and reactivate (POST /users/{id}/reactivar).
                motivo = "borrado" if deleted else "sin_verificar" if unverified else "bloqueado" if blocked else None
                self.report.inactive_deleted += deleted
                self.report.inactive_unverified += unverified and not deleted
                self.report.inactive_blocked += motivo == "bloqueado"
                values.append(
                    {
                        "uuid": uuid_lib.UUID(row["uuid"]),
                        "email": data["email"],
                        "dni": data["dni"],
                        "nombre": data["nombre"],
                        "apellido": data["apellido"],
                        "telefono": data["telefono"],
                        "telegram_id": data["telegram_id"],
                        "nivel": nivel,
                        "password_hash": row["hashed_password"],
                        "verificado": bool(row["verificado"]),
                        "activo": motivo is None,
                        "ultimo_acceso": _utc(row["ultimo_acceso"]),
                        "intentos_fallidos": row["intentos_fallidos"] or 0,
                        "bloqueado_hasta": bloqueado_hasta,
                        "extra": _extra(row["extra_data"], id=row["id"], inactivo_por=motivo),
                        "created_at": _utc(row["created_at"]),
                        "updated_at": _utc(row["updated_at"]),
                    }
                )
                olds.append((row["id"], hashes[index]))
            new_ids = self._insert(Usuario, values, [old for old, _ in olds])
            self._finish_batch("usuario", batch, olds, new_ids)

    def _taken_usuario_fields(self, rows: list[dict[str, Any]]) -> dict[tuple[str, Any], int]:
        """Identity fields of these source rows that GAD usuarios (not imported from them) already use."""
        if not rows:
            return {}
        emails = [canonical_email(str(r["email"])) for r in rows]
        dnis = [canonical_dni(str(r["dni"])) for r in rows]
        telegram = [int(r["telegram_id"]) for r in rows if r["telegram_id"] is not None]
        uuids = [uuid_lib.UUID(r["uuid"]) for r in rows]
        found = db.session.execute(
            select(Usuario.id, func.lower(Usuario.email), Usuario.dni, Usuario.telegram_id, Usuario.uuid).where(
                func.lower(Usuario.email).in_(emails) | Usuario.dni.in_(dnis) | Usuario.telegram_id.in_(telegram) | Usuario.uuid.in_(uuids)
            )
        )
        taken: dict[tuple[str, Any], int] = {}
        for uid, email, dni, tg, uu in found:
            taken[("e-mail", email)] = uid
            taken[("dni", dni)] = uid
            if tg is not None:
                taken[("telegram_id", tg)] = uid
            taken[("uuid", str(uu))] = uid
        return taken

    # --- efectivos --------------------------------------------------------------------------------

    def _efectivos(self) -> None:
        same_codigo = self._near_duplicates("efectivos", "codigo_interno", str.strip)
        sql = (
            "SELECT e.id, e.uuid::text AS uuid, e.usuario_id, e.codigo_interno, e.rango, e.unidad, e.especialidad,"
            " e.estado_disponibilidad::text AS estado_disponibilidad, e.ultima_actualizacion_estado, e.metadata,"
            " e.created_at, e.updated_at, e.deleted_at, u.nombre AS usuario_nombre, u.apellido AS usuario_apellido"
            " FROM efectivos e JOIN usuarios u ON u.id = e.usuario_id ORDER BY e.id"
        )
        for batch in self._batches("efectivo", "efectivos", sql):
            rows, hashes, fresh = batch.rows, batch.hashes, batch.fresh
            usuarios = self._known("usuario", [rows[i]["usuario_id"] for i in fresh])
            codigos = [str(rows[i]["codigo_interno"]).strip() for i in fresh]
            new_usuario_ids = [usuarios[rows[i]["usuario_id"]][0] for i in fresh if rows[i]["usuario_id"] in usuarios]
            taken_codigo = {c: i for c, i in db.session.execute(select(Efectivo.codigo_interno, Efectivo.id).where(Efectivo.codigo_interno.in_(codigos)))}
            taken_link = {u: i for u, i in db.session.execute(select(Efectivo.usuario_id, Efectivo.id).where(Efectivo.usuario_id.in_(new_usuario_ids)))}
            values, olds = [], []
            for index in fresh:
                row = rows[index]
                reasons: list[str] = []
                disponibilidad = DISPONIBILIDADES.get(row["estado_disponibilidad"])
                if disponibilidad is None:
                    reasons.append(f"unknown estado_disponibilidad {row['estado_disponibilidad']!r}")
                usuario_id = self._ref("usuario", row["usuario_id"], usuarios, "usuario_id", reasons)
                for other_id, other_codigo in same_codigo.get(row["id"], []):
                    reasons.append(
                        f"codigo_interno {row['codigo_interno']!r} differs only in surrounding spaces from efectivo {other_id} ({other_codigo!r}); GAD trims it"
                    )
                checked = _validate(
                    EfectivoIn,
                    {
                        "codigo_interno": row["codigo_interno"],
                        "nombre": f"{row['usuario_nombre']} {row['usuario_apellido']}",
                        "rango": row["rango"],
                        "unidad": row["unidad"],
                        "especialidad": row["especialidad"],
                        "estado_disponibilidad": disponibilidad or "disponible",
                    },
                    reasons,
                )
                if checked is not None:
                    data = checked.model_dump()
                    if data["codigo_interno"] in taken_codigo:
                        reasons.append(f"codigo_interno {data['codigo_interno']!r} is already used by GAD efectivo {taken_codigo[data['codigo_interno']]}")
                    if usuario_id is not None and usuario_id in taken_link:
                        reasons.append(f"usuario {row['usuario_id']} is already linked to GAD efectivo {taken_link[usuario_id]}")
                if reasons or checked is None:
                    self._reject("efectivo", row["id"], reasons)
                    continue
                values.append(
                    {
                        "uuid": uuid_lib.UUID(row["uuid"]),
                        "usuario_id": usuario_id,
                        "codigo_interno": data["codigo_interno"],
                        "nombre": data["nombre"],
                        "rango": data["rango"],
                        "unidad": data["unidad"],
                        "especialidad": data["especialidad"],
                        "estado_disponibilidad": disponibilidad,
                        "estado_cambiado_en": _utc(row["ultima_actualizacion_estado"]),
                        "activo": row["deleted_at"] is None,
                        "extra": _extra(row["metadata"], id=row["id"]),
                        "created_at": _utc(row["created_at"]),
                        "updated_at": _utc(row["updated_at"]),
                    }
                )
                olds.append((row["id"], hashes[index]))
            new_ids = self._insert(Efectivo, values, [old for old, _ in olds])
            self._finish_batch("efectivo", batch, olds, new_ids)

    # --- tareas and their assignments ----------------------------------------------------------------

    def _tareas(self) -> None:
        sql = (
            "SELECT id, uuid::text AS uuid, codigo, titulo, descripcion, tipo::text AS tipo, prioridad::text AS prioridad,"
            " inicio_programado, fin_programado, inicio_real, fin_real, tiempo_pausado, pausado_en, estado::text AS estado,"
            " delegado_usuario_id, creado_por_usuario_id, ubicacion_lat, ubicacion_lon, ubicacion_descripcion,"
            " coalesce(efectivos_asignados, '{}') AS efectivos_asignados, notas, extra_data, created_at, updated_at, deleted_at"
            " FROM tareas ORDER BY id"
        )
        for batch in self._batches("tarea", "tareas", sql, self._both_assignment_stores):
            rows, hashes, fresh = batch.rows, batch.hashes, batch.fresh
            usuarios = self._known("usuario", [u for i in fresh for u in (rows[i]["delegado_usuario_id"], rows[i]["creado_por_usuario_id"]) if u is not None])
            efectivos = self._known("efectivo", [e for i in fresh for e in set(rows[i]["tarea_efectivos"]) | set(rows[i]["efectivos_asignados"])])
            codigos = [str(rows[i]["codigo"]) for i in fresh]
            taken_codigo = {c: i for c, i in db.session.execute(select(Tarea.codigo, Tarea.id).where(Tarea.codigo.in_(codigos)))}
            values, olds, assignments = [], [], []
            for index in fresh:
                row = rows[index]
                reasons: list[str] = []
                estado = ESTADOS.get(row["estado"])
                tipo = TIPOS.get(row["tipo"])
                prioridad = PRIORIDADES.get(row["prioridad"])
                for what, mapped, raw in (("estado", estado, row["estado"]), ("tipo", tipo, row["tipo"]), ("prioridad", prioridad, row["prioridad"])):
                    if mapped is None:
                        reasons.append(f"unknown {what} {raw!r}")
                delegado = self._ref("usuario", row["delegado_usuario_id"], usuarios, "delegado_usuario_id", reasons)
                creador = self._ref("usuario", row["creado_por_usuario_id"], usuarios, "creado_por_usuario_id", reasons)
                notas = _notas_text(row["notas"])
                checked = _validate(
                    TareaIn,
                    {
                        "codigo": row["codigo"],
                        "titulo": row["titulo"],
                        "descripcion": row["descripcion"],
                        "tipo": tipo or "patrullaje",
                        "prioridad": prioridad or 1,
                        "inicio_programado": row["inicio_programado"],
                        "fin_programado": row["fin_programado"],
                        "ubicacion_lat": _float(row["ubicacion_lat"]),
                        "ubicacion_lng": _float(row["ubicacion_lon"]),
                        "ubicacion_descripcion": row["ubicacion_descripcion"],
                        "notas": notas,
                    },
                    reasons,
                )
                reasons.extend(self._impossible_dates(row))
                if checked is not None and row["codigo"] in taken_codigo:
                    reasons.append(f"codigo {row['codigo']!r} is already used by GAD tarea {taken_codigo[row['codigo']]}")
                # Reconciliation: the union of both stores (each is evidence of an assignment); every
                # disagreement was reported above.
                pairs = []
                for old_efectivo in sorted(set(row["tarea_efectivos"]) | set(row["efectivos_asignados"])):
                    store = "tarea_efectivos" if old_efectivo in row["tarea_efectivos"] else "efectivos_asignados"
                    new_efectivo = self._ref("efectivo", old_efectivo, efectivos, store, reasons)
                    if new_efectivo is not None:
                        pairs.append((old_efectivo, new_efectivo))
                efectivo_ids = [new for _, new in pairs]
                active = estado in _ACTIVOS and row["deleted_at"] is None
                inicio_programado, fin_programado = _utc(row["inicio_programado"]), _utc(row["fin_programado"])
                # The window an assignment books, as GAD's own assignment does (turnos.ventana).
                window = periodo(inicio_programado, fin_programado) if inicio_programado and fin_programado else None
                if active:
                    for old_efectivo, new_efectivo in pairs:
                        clash = self._booking_clash(new_efectivo, window)
                        if clash:
                            reasons.append(f"efectivo {old_efectivo} {clash}")
                if reasons or checked is None or creador is None:
                    self._reject("tarea", row["id"], reasons)
                    continue
                if active:
                    for new_efectivo in efectivo_ids:
                        self._hold(new_efectivo, window, f"GRUPO_GAD tarea {row['id']}")
                data = checked.model_dump()
                creado = _utc(row["created_at"])
                assert creado is not None
                released = None
                if not active:
                    ends = [d for d in (_utc(row["fin_real"]), _utc(row["deleted_at"]), _utc(row["updated_at"])) if d is not None]
                    released = max(ends[0], creado)
                pausado = row["tiempo_pausado"]
                values.append(
                    {
                        "uuid": uuid_lib.UUID(row["uuid"]),
                        "codigo": data["codigo"],
                        "titulo": data["titulo"],
                        "descripcion": data["descripcion"],
                        "tipo": tipo,
                        "prioridad": prioridad,
                        "estado": estado,
                        "es_emergencia": False,
                        "inicio_programado": inicio_programado,
                        "fin_programado": fin_programado,
                        "inicio_real": _utc(row["inicio_real"]),
                        "fin_real": _utc(row["fin_real"]),
                        "pausado_en": _utc(row["pausado_en"]),
                        "tiempo_pausado_s": int(pausado.total_seconds()) if pausado is not None else 0,
                        "ubicacion_lat": data["ubicacion_lat"],
                        "ubicacion_lon": data["ubicacion_lng"],
                        "ubicacion_descripcion": data["ubicacion_descripcion"],
                        "delegado_usuario_id": delegado,
                        "creado_por_usuario_id": creador,
                        "notas": data["notas"],
                        "extra": _extra(row["extra_data"], id=row["id"]),
                        "created_at": creado,
                        "updated_at": _utc(row["updated_at"]),
                        "deleted_at": _utc(row["deleted_at"]),
                        "cerrada_en": released if estado in ESTADOS_FINALES else None,
                    }
                )
                olds.append((row["id"], hashes[index]))
                assignments.append((efectivo_ids, creado, released, estado, window))
            new_ids = self._insert(Tarea, values, [old for old, _ in olds])
            asignaciones = [
                {
                    "tarea_id": tarea_id,
                    "efectivo_id": efectivo_id,
                    "asignado_por_usuario_id": None,
                    "asignado_en": creado,
                    "liberado_en": released,
                    # Released only with the old tarea's end: its efectivos keep reading it (READS_THROUGH).
                    "liberada_al_cerrar": released is not None,
                    "periodo": window,
                }
                for tarea_id, (efectivo_ids, creado, released, _, window) in zip(new_ids, assignments, strict=True)
                for efectivo_id in efectivo_ids
            ]
            if asignaciones:
                db.session.execute(insert(_core(Asignacion)), asignaciones)
                self.report.asignaciones += len(asignaciones)
            # GAD's history starts with where the state came from (the old system rarely wrote history).
            historial = [
                {
                    "tarea_id": tarea_id,
                    "estado_anterior": None,
                    "estado_nuevo": estado,
                    "usuario_id": None,
                    "motivo": f"Importada de GRUPO_GAD (tarea {old_id})",
                    "created_at": self.now,
                }
                for tarea_id, (old_id, _), (_, _, _, estado, _) in zip(new_ids, olds, assignments, strict=True)
            ]
            if historial:
                db.session.execute(insert(_core(HistorialEstado)), historial)
            self._finish_batch("tarea", batch, olds, new_ids)

    def _hold(self, efectivo_id: int, window: Range[datetime] | None, label: str) -> None:
        if window is None or window.lower is None or window.upper is None:
            self.unscheduled[efectivo_id] = label
        else:
            self.booked.setdefault(efectivo_id, []).append((window.lower, window.upper, label))

    def _booking_clash(self, efectivo_id: int, window: Range[datetime] | None) -> str | None:
        """Why GAD would refuse this active assignment, as ``asignaciones.assign`` and the database's constraints do:
        a window overlapping another active booking of the efectivo, or a second active tarea without a schedule."""
        if window is None or window.lower is None or window.upper is None:
            held = self.unscheduled.get(efectivo_id)
            return f"already works {held}, also without a schedule (GAD: one unscheduled tarea at a time)" if held else None
        for start, end, label in self.booked.get(efectivo_id, []):
            if window.lower < end and start < window.upper:
                return f"is already booked by {label} from {start.isoformat()} to {end.isoformat()} (GAD: an efectivo's bookings do not overlap)"
        return None

    def _both_assignment_stores(self, rows: list[dict[str, Any]]) -> None:
        """Both stores are part of what was read: a change to either makes the tarea "changed"."""
        table_store = self._assignment_table([r["id"] for r in rows])
        for row in rows:
            row["tarea_efectivos"] = table_store.get(row["id"], [])
            row["efectivos_asignados"] = sorted(set(row["efectivos_asignados"] or []))
            only_table = sorted(set(row["tarea_efectivos"]) - set(row["efectivos_asignados"]))
            only_array = sorted(set(row["efectivos_asignados"]) - set(row["tarea_efectivos"]))
            if only_table or only_array:
                self.report.disagreements.append(Disagreement(row["id"], only_table, only_array))

    def _assignment_table(self, tarea_ids: list[int]) -> dict[int, list[int]]:
        with self.source.cursor() as cur:
            cur.execute(
                "SELECT tarea_id, array_agg(efectivo_id ORDER BY efectivo_id) FROM tarea_efectivos WHERE tarea_id = ANY(%s) GROUP BY tarea_id",
                (tarea_ids,),
            )
            return {int(t): list(e) for t, e in cur.fetchall()}

    def _impossible_dates(self, row: dict[str, Any]) -> list[str]:
        reasons = []
        inicio, fin = _utc(row["inicio_real"]), _utc(row["fin_real"])
        if fin is not None and inicio is None:
            reasons.append("fin_real is set but inicio_real is not (impossible dates)")
        if fin is not None and inicio is not None and fin < inicio:
            reasons.append("fin_real is before inicio_real (impossible dates)")
        for what, value in (("inicio_real", inicio), ("fin_real", fin)):
            if value is not None and value > self.now + FUTURE_TOLERANCE:
                reasons.append(f"{what} {value.isoformat()} is in the future (impossible dates)")
        for what in ("inicio_real", "fin_real", "pausado_en"):  # the scheduled ones are checked by TareaIn
            value = _utc(row[what])
            if value is not None and not TIEMPO_MIN <= value < TIEMPO_MAX:
                reasons.append(f"{what} {value.isoformat()} is outside {TIEMPO_MIN.year}-{TIEMPO_MAX.year} (impossible dates)")
        pausado = row["tiempo_pausado"]
        if pausado is not None and pausado < timedelta(0):
            reasons.append("tiempo_pausado is negative (impossible dates)")
        return reasons

    # --- state history ------------------------------------------------------------------------------

    def _historial(self) -> None:
        sql = (
            "SELECT id, tarea_id, estado_anterior::text AS estado_anterior, estado_nuevo::text AS estado_nuevo, usuario_id, motivo,"
            " extra_data, created_at FROM historial_estados ORDER BY id"
        )
        for batch in self._batches("historial", "historial", sql):
            rows, hashes, fresh = batch.rows, batch.hashes, batch.fresh
            tareas = self._known("tarea", [rows[i]["tarea_id"] for i in fresh])
            usuarios = self._known("usuario", [rows[i]["usuario_id"] for i in fresh if rows[i]["usuario_id"] is not None])
            values, olds = [], []
            for index in fresh:
                row = rows[index]
                reasons: list[str] = []
                tarea_id = self._ref("tarea", row["tarea_id"], tareas, "tarea_id", reasons)
                usuario_id = self._ref("usuario", row["usuario_id"], usuarios, "usuario_id", reasons)
                anterior = ESTADOS.get(row["estado_anterior"]) if row["estado_anterior"] is not None else None
                nuevo = ESTADOS.get(row["estado_nuevo"])
                if row["estado_anterior"] is not None and anterior is None:
                    reasons.append(f"unknown estado_anterior {row['estado_anterior']!r}")
                if nuevo is None:
                    reasons.append(f"unknown estado_nuevo {row['estado_nuevo']!r}")
                if row["motivo"] is not None and len(row["motivo"]) > 500:
                    reasons.append("motivo is longer than 500 characters")
                if reasons or tarea_id is None:
                    self._reject("historial", row["id"], reasons)
                    continue
                values.append(
                    {
                        "tarea_id": tarea_id,
                        "estado_anterior": anterior,
                        "estado_nuevo": nuevo,
                        "usuario_id": usuario_id,
                        "motivo": row["motivo"],
                        "extra": row["extra_data"],
                        "created_at": _utc(row["created_at"]),
                    }
                )
                olds.append((row["id"], hashes[index]))
            new_ids = self._insert(HistorialEstado, values)
            self._finish_batch("historial", batch, olds, new_ids)

    # --- availability -------------------------------------------------------------------------------

    def _settle_disponibilidad(self) -> None:
        """Every imported efectivo's availability as GAD's own rule keeps it (``efectivos.following_assignments``):
        ``disponible`` while working a running tarea becomes ``en_tarea``, ``en_tarea`` with none becomes
        ``disponible``; a state set by hand stays. GRUPO_GAD did not keep the two in step, and dispatch and the
        board read the state. Listed in the report; the last batch, so a re-run settles what an interrupted one left."""
        imported = select(Procedencia.new_id).where(Procedencia.sistema == SISTEMA, Procedencia.entidad == "efectivo")
        candidates = db.session.execute(
            select(Efectivo.id, Efectivo.codigo_interno, Efectivo.estado_disponibilidad).where(
                Efectivo.id.in_(imported), Efectivo.estado_disponibilidad.in_([Disponibilidad.DISPONIBLE.value, Disponibilidad.EN_TAREA.value])
            )
        ).all()
        working = efectivos_service.working_on_running_tareas([eid for eid, _, _ in candidates]) if candidates else set()
        for eid, codigo, estado in candidates:
            following = efectivos_service.following_assignments(Disponibilidad(estado), working=eid in working)
            if following != estado:
                db.session.execute(
                    update(Efectivo)
                    .where(Efectivo.id == eid)
                    .values(estado_disponibilidad=following.value, estado_cambiado_en=self.now, version=Efectivo.version + 1)
                )
                self.report.settled.append((eid, codigo, estado, following.value))
        db.session.flush()
        self.end_batch()
