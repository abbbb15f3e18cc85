"""Reports (supervisor+): response times, workload and outcomes over a date range, and the tareas CSV export.

Definitions (also in the README):
- A report covers the tareas *created* in [desde, hasta), optionally only some tipos and prioridades,
  and, with ``unidad``, only tareas that had an efectivo of that unidad assigned at some point.
- Response times, in seconds, per tarea: ``asignacion`` creation → first assignment; ``inicio``
  creation → start (inicio_real); ``ejecucion`` start → finish minus the time paused (finalizadas
  only); ``pausa`` the time paused (finalizadas only). Percentiles are PostgreSQL's
  ``percentile_cont`` (linear interpolation between the two nearest values).
- Workload, per efectivo (and summed per unidad): hours of turno inside the range; hours assigned
  to a running tarea inside the range (from the later of assignment and start to the earlier of
  release and finish; pauses count, the efectivo is still committed); tareas worked.
- Outcomes: finalizadas, canceladas, abiertas (programada, en curso or pausada); emergencies, how
  many went unassigned (no efectivo within a minute of creation) and for how long (until the first
  assignment, else until they closed, else until now).
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
from sqlalchemy.types import ARRAY, DateTime, Integer, String

from gad import policy
from gad.db_session import allow_idle_transaction
from gad.extensions import db
from gad.models import Usuario
from gad.vocab import Nivel

MEDIDAS = ("asignacion", "inicio", "ejecucion", "pausa")
AGRUPACIONES = ("tipo", "prioridad")
# No efectivo within this long after creation: the emergency "went unassigned".
SIN_ASIGNAR_TRAS_S = 60


class Filtro(NamedTuple):
    desde: datetime
    hasta: datetime
    tipos: list[str] | None = None
    prioridades: list[int] | None = None
    unidad: str | None = None

    def params(self) -> dict[str, Any]:
        return {"desde": self.desde, "hasta": self.hasta, "tipos": self.tipos, "prioridades": self.prioridades, "unidad": self.unidad}

    def as_dict(self) -> dict[str, Any]:
        return {"desde": self.desde.isoformat(), "hasta": self.hasta.isoformat(), "tipo": self.tipos, "prioridad": self.prioridades, "unidad": self.unidad}


_TYPES = (
    bindparam("desde", type_=DateTime(timezone=True)),
    bindparam("hasta", type_=DateTime(timezone=True)),
    bindparam("tipos", type_=ARRAY(String)),
    bindparam("prioridades", type_=ARRAY(Integer)),
    bindparam("unidad", type_=String),
)

# The tareas of a report, one row each, with their measures in whole seconds. The first assignment is a
# column of the tarea (set by assignment and dispatch) and the measures are stored generated columns
# (gad/models/tarea.py MEDIDAS_SQL: the definitions above, in SQL), so a report is a scan of tareas with
# no join and no per-row arithmetic.
_TAREAS_CTE = """
    base AS (
        SELECT t.id, t.codigo, t.titulo, t.tipo, t.prioridad, t.estado, t.es_emergencia, t.created_at,
               t.inicio_real, t.fin_real, t.tiempo_pausado_s, t.primera_asignacion_en AS primera_asignacion,
               t.medida_asignacion_s AS asignacion, t.medida_inicio_s AS inicio,
               t.medida_ejecucion_s AS ejecucion, t.medida_pausa_s AS pausa
          FROM tareas t
         WHERE t.deleted_at IS NULL AND t.created_at >= :desde AND t.created_at < :hasta
           AND (CAST(:tipos AS text[]) IS NULL OR t.tipo = ANY(:tipos))
           AND (CAST(:prioridades AS int[]) IS NULL OR t.prioridad = ANY(:prioridades))
           AND (CAST(:unidad AS text) IS NULL OR EXISTS (
                SELECT 1 FROM asignaciones a JOIN efectivos e ON e.id = a.efectivo_id
                 WHERE a.tarea_id = t.id AND e.unidad = :unidad))
    )
"""

# Exact percentiles without sorting a million rows per measure and group: PostgreSQL counts how many
# tareas of each group took each number of seconds, and percentile_cont's interpolation is done here over
# those counts. k = 0..3 are MEDIDAS per group (k = 0 keeps its NULLs, so its counts also give the tareas
# per group); k = 4 is the daily trend: creation → start at minute resolution (round(inicio / 60.0) in
# integer arithmetic) per local day, NULLs kept to count the tareas created that day. Five small
# aggregations under one Parallel Append: each is one pass over the narrow covering index, and the
# workers take them side by side (one pass hashing five keys per row cannot run in parallel). The local
# day of a row is found by a binary search among the range's day boundaries (computed once, in the
# zone, so 23- and 25-hour days are right) instead of a time-zone conversion per row, which cost more
# than the rest of that aggregation.
_HISTOGRAMA = """WITH {cte}
    SELECT {agrupar} AS grupo, NULL::int AS dia, 0 AS k, asignacion AS v, count(*) AS n FROM base GROUP BY 1, 4
    UNION ALL SELECT {agrupar}, NULL, 1, inicio, count(*) FROM base WHERE inicio IS NOT NULL GROUP BY 1, 4
    UNION ALL SELECT {agrupar}, NULL, 2, ejecucion, count(*) FROM base WHERE ejecucion IS NOT NULL GROUP BY 1, 4
    UNION ALL SELECT {agrupar}, NULL, 3, pausa, count(*) FROM base WHERE pausa IS NOT NULL GROUP BY 1, 4
    UNION ALL SELECT NULL, width_bucket(created_at, CAST(:limites AS timestamptz[])), 4,
                     CASE WHEN inicio >= 0 THEN (inicio + 30) / 60 ELSE -((30 - inicio) / 60) END, count(*)
                FROM base GROUP BY 2, 4"""


def _dias(filtro: Filtro, tz: ZoneInfo) -> list[datetime]:
    """The instants at which each local day of the range starts (and the one after it ends): day i of the
    report is [limites[i-1], limites[i]), whatever its length in hours."""
    first, last = filtro.desde.astimezone(tz).date(), filtro.hasta.astimezone(tz).date() + timedelta(days=1)
    return [datetime.combine(first + timedelta(days=i), time(0), tzinfo=tz) for i in range((last - first).days + 1)]


def _query(sql: str) -> Any:
    return text(sql).bindparams(*_TYPES)


_LIMITES = bindparam("limites", type_=ARRAY(DateTime(timezone=True)))


# The histogram reads base five times. Inlined five times (NOT MATERIALIZED), each is an index-only scan
# of ix_tareas_reportes and they run in parallel; but with ``unidad`` each would also join asignaciones
# and efectivos again (3.5 s for a year of one unidad, 0.5 s this way), so then its tareas are collected
# once (MATERIALIZED) and aggregated five times from memory.
# Each statement of this module is built by the first report that runs it, not by every worker's import (parsing
# these texts for their parameters cost each worker ~1 ms at start-up; docs/ARCHITECTURE.md §5 "Start-up").
@functools.cache
def _histograma(agrupar: str, unidad: bool) -> Any:
    _grouping(agrupar)
    materialized = "" if unidad else "NOT "
    sql = _HISTOGRAMA.format(cte=_TAREAS_CTE.replace("base AS (", f"base AS {materialized}MATERIALIZED ("), agrupar=agrupar)
    return text(sql).bindparams(*_TYPES, _LIMITES)


def _grouping(agrupar: str) -> None:
    # The grouping is spliced into the SQL: only the known column names, whatever the caller validated.
    if agrupar not in AGRUPACIONES:
        raise KeyError(agrupar)


def percentiles(histograma: dict[int, int], quantiles: tuple[float, ...] = (0.5, 0.9)) -> tuple[list[float | None], int, int | None]:
    """``percentile_cont`` over a {value: count} histogram: (percentiles, n, max), exactly as PostgreSQL
    computes it over the expanded values (linear interpolation between the two nearest ranks)."""
    n = sum(histograma.values())
    if n == 0:
        return [None for _ in quantiles], 0, None
    values = sorted(histograma)
    out: list[float | None] = []
    for q in quantiles:
        position = q * (n - 1)
        lower_rank, fraction = int(position), position - int(position)
        lower = upper = None
        seen = 0
        for value in values:
            seen += histograma[value]
            if lower is None and seen > lower_rank:
                lower = value
            if seen > lower_rank + (1 if fraction > 0 else 0):
                upper = value
                break
        assert lower is not None and upper is not None
        out.append(lower + (upper - lower) * fraction)
    return out, n, values[-1]


def _stats(histograma: dict[int, int]) -> dict[str, Any]:
    (p50, p90), n, mx = percentiles(histograma)
    return {"n": n, "p50": _round(p50), "p90": _round(p90), "max": _round(mx)}


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def _require(actor: Usuario) -> None:
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Reading reports")


def _prepare() -> None:
    # Hash tables of a report fit in memory instead of spilling to disk (this transaction only). And the
    # planner is told what is true of a report's pages (cached or on SSD, as on Fly volumes): a random
    # page costs about a sequential one. With the default (4, spinning disks) it reads a year of tareas
    # five times from the wide heap (3 s) rather than from ix_tareas_reportes, a fifth of its size (1 s).
    db.session.execute(text("SELECT set_config('work_mem', '128MB', true), set_config('random_page_cost', '1.1', true)"))


def tiempos(actor: Usuario, filtro: Filtro, agrupar: str = "tipo") -> dict[str, Any]:
    """Response times p50/p90/max per group and overall (seconds), and the daily trend."""
    from gad.services.turnos import zona

    _require(actor)
    _prepare()
    por_grupo: dict[Any, list[dict[int, int]]] = {}
    total: list[dict[int, int]] = [{} for _ in range(4)]
    tareas: dict[Any, int] = {}
    dias: dict[Any, dict[int, int]] = {}
    creadas: dict[Any, int] = {}
    limites = _dias(filtro, zona())
    for grupo, cubo, k, v, n in db.session.execute(_histograma(agrupar, filtro.unidad is not None), filtro.params() | {"limites": limites}):
        n = int(n)
        if k == 4:
            dia = limites[cubo - 1].date()
            creadas[dia] = creadas.get(dia, 0) + n
            if v is not None:
                dias.setdefault(dia, {})[int(v) * 60] = n
            continue
        hist = por_grupo.setdefault(grupo, [{} for _ in range(4)])
        if k == 0:
            tareas[grupo] = tareas.get(grupo, 0) + n
            if v is None:
                continue
        hist[k][v] = n
        total[k][v] = total[k].get(v, 0) + n

    def build(n: int, hists: list[dict[int, int]]) -> dict[str, Any]:
        return {"n": n} | {m: _stats(hists[i]) for i, m in enumerate(MEDIDAS)}

    grupos = [build(tareas[g], h) | {"grupo": g} for g, h in sorted(por_grupo.items(), key=lambda item: item[0])]
    por_dia = []
    for dia in sorted(creadas):
        (p50, p90), _, _ = percentiles(dias.get(dia, {}))
        por_dia.append({"dia": dia.isoformat(), "n": creadas[dia], "inicio_p50": _round(p50), "inicio_p90": _round(p90)})
    return {
        "filtro": filtro.as_dict(),
        "agrupar": agrupar,
        "unidad_medida": "segundos",
        "grupos": grupos,
        "total": build(sum(tareas.values()), total),
        "por_dia": por_dia,
    }


_RESULTADOS = """WITH {cte}
    SELECT {agrupar} AS grupo, count(*) AS n,
           count(*) FILTER (WHERE estado = 'finalizada') AS finalizadas,
           count(*) FILTER (WHERE estado = 'cancelada') AS canceladas,
           count(*) FILTER (WHERE estado IN ('programada', 'en_curso', 'pausada')) AS abiertas,
           count(*) FILTER (WHERE es_emergencia) AS emergencias
      FROM base GROUP BY 1"""
# Emergencies left without an efectivo for more than SIN_ASIGNAR_TRAS_S, and for how long (whole seconds).
_SIN_ASIGNAR = """WITH {cte}
    SELECT {agrupar} AS grupo, round(extract(epoch FROM coalesce(primera_asignacion, fin_real, now()) - created_at))::bigint AS v, count(*) AS n
      FROM base
     WHERE es_emergencia AND (primera_asignacion IS NULL OR primera_asignacion > created_at + make_interval(secs => :umbral))
     GROUP BY 1, 2"""


@functools.cache
def _resultados_q(agrupar: str) -> Any:
    _grouping(agrupar)
    return _query(_RESULTADOS.format(cte=_TAREAS_CTE, agrupar=agrupar))


@functools.cache
def _sin_asignar_q(agrupar: str) -> Any:
    _grouping(agrupar)
    return _query(_SIN_ASIGNAR.format(cte=_TAREAS_CTE, agrupar=agrupar))


_CONTADORES = ("n", "finalizadas", "canceladas", "abiertas", "emergencias")


def resultados(actor: Usuario, filtro: Filtro, agrupar: str = "tipo") -> dict[str, Any]:
    """Finished / cancelled / still open, and emergencies left unassigned and for how long."""
    _require(actor)
    _prepare()
    contadores: dict[Any, dict[str, int]] = {}
    for row in db.session.execute(_resultados_q(agrupar), filtro.params()):
        contadores[row.grupo] = {k: int(getattr(row, k)) for k in _CONTADORES}
    sin_asignar: dict[Any, dict[int, int]] = {}
    for grupo, v, n in db.session.execute(_sin_asignar_q(agrupar), filtro.params() | {"umbral": SIN_ASIGNAR_TRAS_S}):
        sin_asignar.setdefault(grupo, {})[int(v)] = int(n)

    def build(counts: dict[str, int], hist: dict[int, int]) -> dict[str, Any]:
        (p50, p90), n, mx = percentiles(hist)
        return counts | {"emergencias_sin_asignar": n, "tiempo_sin_asignar": {"p50": _round(p50), "p90": _round(p90), "max": _round(mx)}}

    total_counts = {k: sum(c[k] for c in contadores.values()) for k in _CONTADORES}
    total_hist: dict[int, int] = {}
    for hist in sin_asignar.values():
        for v, n in hist.items():
            total_hist[v] = total_hist.get(v, 0) + n
    grupos = [build(c, sin_asignar.get(g, {})) | {"grupo": g} for g, c in sorted(contadores.items(), key=lambda item: item[0])]
    return {"filtro": filtro.as_dict(), "agrupar": agrupar, "grupos": grupos, "total": build(total_counts, total_hist)}


_CARGA = """
    WITH rango AS (SELECT tstzrange(:desde, :hasta, '[)') AS r),
    turno_h AS (
        SELECT tu.efectivo_id, sum(extract(epoch FROM upper(tu.periodo * rango.r) - lower(tu.periodo * rango.r))) / 3600 AS horas
          FROM turnos tu, rango
         WHERE tu.periodo && rango.r
         GROUP BY tu.efectivo_id
    ),
    trabajo AS (
        -- Committed to a running tarea: from the later of assignment and start to the earlier of release
        -- and finish, clipped to the range; nothing for a tarea that never started (greatest() skips NULLs).
        -- The tarea's times, tipo, prioridad and deletion are trigger-kept copies on the assignment, so
        -- this reads asignaciones alone (no join with a million tareas).
        SELECT a.efectivo_id, a.tarea_id,
               CASE WHEN a.tarea_inicio_real IS NOT NULL THEN greatest(a.asignado_en, a.tarea_inicio_real, :desde) END AS desde_w,
               least(coalesce(a.liberado_en, now()), coalesce(a.tarea_fin_real, now()), :hasta) AS hasta_w
          FROM asignaciones a
         WHERE NOT a.tarea_borrada AND a.asignado_en < :hasta AND coalesce(a.liberado_en, 'infinity') > :desde
           AND (CAST(:tipos AS text[]) IS NULL OR a.tarea_tipo = ANY(:tipos))
           AND (CAST(:prioridades AS int[]) IS NULL OR a.tarea_prioridad = ANY(:prioridades))
    ),
    tarea_h AS (
        SELECT efectivo_id, count(DISTINCT tarea_id) AS tareas,
               coalesce(sum(greatest(0, extract(epoch FROM hasta_w - desde_w))), 0) / 3600 AS horas
          FROM trabajo GROUP BY 1
    )
    SELECT e.id, e.codigo_interno, e.nombre, e.unidad,
           coalesce(th.horas, 0) AS horas_turno, coalesce(ta.horas, 0) AS horas_tarea, coalesce(ta.tareas, 0) AS tareas
      FROM efectivos e
      LEFT JOIN turno_h th ON th.efectivo_id = e.id
      LEFT JOIN tarea_h ta ON ta.efectivo_id = e.id
     WHERE (CAST(:unidad AS text) IS NULL OR e.unidad = :unidad) AND (th.efectivo_id IS NOT NULL OR ta.efectivo_id IS NOT NULL OR e.activo)
     ORDER BY e.unidad NULLS LAST, e.codigo_interno
    """


@functools.cache
def _carga() -> Any:
    return text(_CARGA).bindparams(*_TYPES)


def carga(actor: Usuario, filtro: Filtro) -> dict[str, Any]:
    """Hours on shift, hours on tareas and tareas worked, per efectivo and per unidad, inside [desde, hasta)."""
    _require(actor)
    _prepare()
    efectivos = [
        {
            "efectivo_id": r.id,
            "codigo_interno": r.codigo_interno,
            "nombre": r.nombre,
            "unidad": r.unidad,
            "horas_turno": round(float(r.horas_turno), 2),
            "horas_tarea": round(float(r.horas_tarea), 2),
            "tareas": int(r.tareas),
        }
        for r in db.session.execute(_carga(), filtro.params())
    ]
    unidades: dict[str | None, dict[str, Any]] = {}
    for e in efectivos:
        u = unidades.setdefault(e["unidad"], {"unidad": e["unidad"], "efectivos": 0, "horas_turno": 0.0, "horas_tarea": 0.0, "tareas": 0})
        u["efectivos"] += 1
        u["horas_turno"] = round(u["horas_turno"] + e["horas_turno"], 2)
        u["horas_tarea"] = round(u["horas_tarea"] + e["horas_tarea"], 2)
        u["tareas"] += e["tareas"]
    return {"filtro": filtro.as_dict(), "efectivos": efectivos, "unidades": list(unidades.values())}


# --- CSV -----------------------------------------------------------------------------------------
# For a Spanish-locale spreadsheet: ';' separates fields (',' is the decimal mark there, and Excel's
# es-ES list separator is ';'), numbers use a decimal comma, the file is UTF-8 with a BOM (without it
# Excel reads UTF-8 as Windows-1252 and garbles ñ and accents), lines end in CRLF (RFC 4180), and
# times are local wall-clock "YYYY-MM-DD HH:MM:SS" in ZONA_HORARIA, which every spreadsheet parses.
BOM = "\ufeff"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def _number(value: Any, decimals: int = 1) -> str:
    if value is None:
        return ""
    return f"{float(value):.{decimals}f}".replace(".", ",")


# A cell a spreadsheet would run as a formula (OWASP's "CSV injection"): a titulo "=HYPERLINK(…)" one usuario typed
# would run on the computer of whoever opens the export. Free text starting so gets a leading apostrophe, so a
# spreadsheet opening the file shows it as text (OWASP's advice) instead of running it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def _when(value: datetime | None, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


class _Line:
    """A csv.writer target that hands back each written line (no growing buffer)."""

    def __init__(self) -> None:
        self.value = ""

    def write(self, value: str) -> int:
        self.value = value
        return len(value)


def _writer() -> tuple[Any, _Line]:
    line = _Line()
    return csv.writer(line, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL), line


TAREAS_CSV_COLUMNS = (
    "id",
    "codigo",
    "titulo",
    "tipo",
    "prioridad",
    "estado",
    "emergencia",
    "creada",
    "primera_asignacion",
    "inicio",
    "fin",
    "min_hasta_asignacion",
    "min_hasta_inicio",
    "min_ejecucion",
    "min_pausa",
)


@functools.cache
def _export() -> Any:
    return _query(f"WITH {_TAREAS_CTE} SELECT * FROM base ORDER BY created_at, id")


STREAM_BATCH = 2000


def check_export(actor: Usuario) -> None:
    _require(actor)


def tareas_csv(filtro: Filtro, tz: ZoneInfo) -> Iterator[str]:
    """The tareas of a report, one CSV line each, read through a server-side cursor in batches: memory
    stays flat whatever the number of rows. Call ``check_export`` first (this runs after the response starts)."""
    writer, line = _writer()
    writer.writerow(TAREAS_CSV_COLUMNS)
    yield BOM + line.value
    allow_idle_transaction()  # between batches the client reads; a slow one must not have the stream cut
    result = db.session.connection().execute(_export().execution_options(stream_results=True, yield_per=STREAM_BATCH), filtro.params())
    chunk: list[str] = []
    for r in result:
        writer.writerow(
            (
                r.id,
                _text(r.codigo),
                _text(r.titulo),
                r.tipo,
                r.prioridad,
                r.estado,
                "sí" if r.es_emergencia else "no",
                _when(r.created_at, tz),
                _when(r.primera_asignacion, tz),
                _when(r.inicio_real, tz),
                _when(r.fin_real, tz),
                _number(r.asignacion / 60 if r.asignacion is not None else None),
                _number(r.inicio / 60 if r.inicio is not None else None),
                _number(r.ejecucion / 60 if r.ejecucion is not None else None),
                _number(r.pausa / 60 if r.pausa is not None else None),
            )
        )
        chunk.append(line.value)
        if len(chunk) >= STREAM_BATCH:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)
    db.session.rollback()  # read-only: end the streaming transaction now rather than at teardown


def resumen_csv(report: dict[str, Any], kind: str) -> str:
    """A small report (tiempos, resultados, carga) as one CSV document in the same dialect."""
    writer, line = _writer()
    out = io.StringIO()
    out.write(BOM)

    def row(values: list[Any]) -> None:
        writer.writerow(values)
        out.write(line.value)

    if kind == "tiempos":
        row(["grupo", "n"] + [f"{m}_{s}_min" for m in MEDIDAS for s in ("p50", "p90", "max")])
        for g in [*report["grupos"], report["total"] | {"grupo": "TOTAL"}]:
            row([g["grupo"], g["n"]] + [_number(g[m][s] / 60 if g[m][s] is not None else None, 2) for m in MEDIDAS for s in ("p50", "p90", "max")])
    elif kind == "resultados":
        keys = ["n", "finalizadas", "canceladas", "abiertas", "emergencias", "emergencias_sin_asignar"]
        row(["grupo", *keys, "sin_asignar_p50_min", "sin_asignar_p90_min", "sin_asignar_max_min"])
        for g in [*report["grupos"], report["total"] | {"grupo": "TOTAL"}]:
            t = g["tiempo_sin_asignar"]
            row([g["grupo"], *(g[k] for k in keys), *(_number(t[s] / 60 if t[s] is not None else None, 2) for s in ("p50", "p90", "max"))])
    else:
        row(["efectivo_id", "codigo_interno", "nombre", "unidad", "horas_turno", "horas_tarea", "tareas"])
        for e in report["efectivos"]:
            horas = (_number(e["horas_turno"], 2), _number(e["horas_tarea"], 2))
            row([e["efectivo_id"], _text(e["codigo_interno"]), _text(e["nombre"]), _text(e["unidad"] or ""), *horas, e["tareas"]])
    return out.getvalue()
