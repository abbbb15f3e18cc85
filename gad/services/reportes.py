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
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
from sqlalchemy.types import ARRAY, DateTime, Integer, String

from gad import policy
from gad.extensions import db
from gad.models import Usuario
from gad.vocab import Nivel

MEDIDAS = ("asignacion", "inicio", "ejecucion", "pausa")
AGRUPACIONES = ("tipo", "prioridad")
# No efectivo within this long after creation: the emergency "went unassigned".
SIN_ASIGNAR_TRAS_S = 60


@dataclass(frozen=True)
class Filtro:
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

# The tareas of a report, one row each, with the time of their first assignment. The first assignment
# is aggregated once over the range's assignments (a hash join), not probed per tarea.
_TAREAS_CTE = """
    sel AS (
        SELECT t.id, t.codigo, t.titulo, t.tipo, t.prioridad, t.estado, t.es_emergencia, t.created_at,
               t.inicio_real, t.fin_real, t.tiempo_pausado_s
          FROM tareas t
         WHERE t.deleted_at IS NULL AND t.created_at >= :desde AND t.created_at < :hasta
           AND (CAST(:tipos AS text[]) IS NULL OR t.tipo = ANY(:tipos))
           AND (CAST(:prioridades AS int[]) IS NULL OR t.prioridad = ANY(:prioridades))
           AND (CAST(:unidad AS text) IS NULL OR EXISTS (
                SELECT 1 FROM asignaciones a JOIN efectivos e ON e.id = a.efectivo_id
                 WHERE a.tarea_id = t.id AND e.unidad = :unidad))
    ),
    primera AS (
        SELECT a.tarea_id, min(a.asignado_en) AS en
          FROM asignaciones a
         WHERE a.asignado_en >= :desde
         GROUP BY a.tarea_id
    ),
    base AS (
        SELECT s.*, p.en AS primera_asignacion,
               extract(epoch FROM p.en - s.created_at) AS asignacion,
               extract(epoch FROM s.inicio_real - s.created_at) AS inicio,
               CASE WHEN s.estado = 'finalizada' THEN extract(epoch FROM s.fin_real - s.inicio_real) - s.tiempo_pausado_s END AS ejecucion,
               CASE WHEN s.estado = 'finalizada' THEN s.tiempo_pausado_s END AS pausa
          FROM sel s LEFT JOIN primera p ON p.tarea_id = s.id
    )
"""


def _stats_sql(measure: str) -> str:
    return (
        f"count({measure}) AS {measure}_n, "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {measure}) AS {measure}_p50, "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {measure}) AS {measure}_p90, "
        f"max({measure}) AS {measure}_max"
    )


def _grouped(select_list: str, agrupar: str) -> Any:
    # agrupar is one of AGRUPACIONES (validated by the schema), never free text.
    assert agrupar in AGRUPACIONES
    sql = (
        f"WITH {_TAREAS_CTE} SELECT {agrupar} AS grupo, GROUPING({agrupar}) AS es_total, {select_list}"
        f" FROM base GROUP BY GROUPING SETS (({agrupar}), ()) ORDER BY es_total, grupo"
    )
    return text(sql).bindparams(*_TYPES)


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def _split(rows: list[Any], build: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    grupos = [build(row) | {"grupo": row.grupo} for row in rows if not row.es_total]
    total = next((build(row) for row in rows if row.es_total), None) or build(None)
    return grupos, total


def _require(actor: Usuario) -> None:
    policy.require_nivel(actor, Nivel.SUPERVISOR, "Reading reports")


def tiempos(actor: Usuario, filtro: Filtro, agrupar: str = "tipo") -> dict[str, Any]:
    """Response times p50/p90/max per group and overall (seconds)."""
    _require(actor)
    select_list = ", ".join(["count(*) AS n", *(_stats_sql(m) for m in MEDIDAS)])
    rows = list(db.session.execute(_grouped(select_list, agrupar), filtro.params()))

    def build(row: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"n": int(row.n) if row is not None else 0}
        for m in MEDIDAS:
            out[m] = {
                "n": int(getattr(row, f"{m}_n")) if row is not None else 0,
                "p50": _round(getattr(row, f"{m}_p50", None)) if row is not None else None,
                "p90": _round(getattr(row, f"{m}_p90", None)) if row is not None else None,
                "max": _round(getattr(row, f"{m}_max", None)) if row is not None else None,
            }
        return out

    grupos, total = _split(rows, build)
    return {"filtro": filtro.as_dict(), "agrupar": agrupar, "unidad_medida": "segundos", "grupos": grupos, "total": total, "por_dia": _por_dia(filtro)}


_POR_DIA = text(
    f"""WITH {_TAREAS_CTE}
    SELECT (date_trunc('day', created_at AT TIME ZONE :tz))::date AS dia, count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY inicio) AS inicio_p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY inicio) AS inicio_p90
      FROM base GROUP BY 1 ORDER BY 1"""
).bindparams(*_TYPES)


def _por_dia(filtro: Filtro) -> list[dict[str, Any]]:
    """The trend: tareas created per local day and their creation → start p50/p90."""
    from gad.services.turnos import zona

    rows = db.session.execute(_POR_DIA, filtro.params() | {"tz": str(zona())})
    return [{"dia": r.dia.isoformat(), "n": int(r.n), "inicio_p50": _round(r.inicio_p50), "inicio_p90": _round(r.inicio_p90)} for r in rows]


def resultados(actor: Usuario, filtro: Filtro, agrupar: str = "tipo") -> dict[str, Any]:
    """Finished / cancelled / still open, and emergencies left unassigned and for how long."""
    _require(actor)
    unassigned = f"es_emergencia AND (primera_asignacion IS NULL OR primera_asignacion > created_at + interval '{SIN_ASIGNAR_TRAS_S} seconds')"
    sin_asignar_s = "extract(epoch FROM coalesce(primera_asignacion, fin_real, now()) - created_at)"
    select_list = ", ".join(
        [
            "count(*) AS n",
            "count(*) FILTER (WHERE estado = 'finalizada') AS finalizadas",
            "count(*) FILTER (WHERE estado = 'cancelada') AS canceladas",
            "count(*) FILTER (WHERE estado IN ('programada', 'en_curso', 'pausada')) AS abiertas",
            "count(*) FILTER (WHERE es_emergencia) AS emergencias",
            f"count(*) FILTER (WHERE {unassigned}) AS emergencias_sin_asignar",
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {sin_asignar_s}) FILTER (WHERE {unassigned}) AS sin_asignar_p50",
            f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {sin_asignar_s}) FILTER (WHERE {unassigned}) AS sin_asignar_p90",
            f"max({sin_asignar_s}) FILTER (WHERE {unassigned}) AS sin_asignar_max",
        ]
    )
    rows = list(db.session.execute(_grouped(select_list, agrupar), filtro.params()))

    def build(row: Any) -> dict[str, Any]:
        keys = ("n", "finalizadas", "canceladas", "abiertas", "emergencias", "emergencias_sin_asignar")
        out: dict[str, Any] = {k: int(getattr(row, k)) if row is not None else 0 for k in keys}
        out["tiempo_sin_asignar"] = {k: _round(getattr(row, f"sin_asignar_{k}")) if row is not None else None for k in ("p50", "p90", "max")}
        return out

    grupos, total = _split(rows, build)
    return {"filtro": filtro.as_dict(), "agrupar": agrupar, "grupos": grupos, "total": total}


_CARGA = text(
    """
    WITH rango AS (SELECT tstzrange(:desde, :hasta, '[)') AS r),
    turno_h AS (
        SELECT tu.efectivo_id, sum(extract(epoch FROM upper(tu.periodo * rango.r) - lower(tu.periodo * rango.r))) / 3600 AS horas
          FROM turnos tu, rango
         WHERE tu.periodo && rango.r
         GROUP BY tu.efectivo_id
    ),
    trabajo AS (
        SELECT a.efectivo_id, a.tarea_id,
               greatest(a.asignado_en, t.inicio_real, :desde) AS desde_w,
               least(coalesce(a.liberado_en, now()), coalesce(t.fin_real, now()), :hasta) AS hasta_w
          FROM asignaciones a JOIN tareas t ON t.id = a.tarea_id
         WHERE t.deleted_at IS NULL AND a.asignado_en < :hasta AND coalesce(a.liberado_en, 'infinity') > :desde
           AND (CAST(:tipos AS text[]) IS NULL OR t.tipo = ANY(:tipos))
           AND (CAST(:prioridades AS int[]) IS NULL OR t.prioridad = ANY(:prioridades))
    ),
    tarea_h AS (
        SELECT efectivo_id, count(DISTINCT tarea_id) AS tareas,
               sum(greatest(0, extract(epoch FROM hasta_w - desde_w)) ) FILTER (WHERE desde_w IS NOT NULL) / 3600 AS horas
          FROM trabajo GROUP BY efectivo_id
    )
    SELECT e.id, e.codigo_interno, e.nombre, e.unidad,
           coalesce(th.horas, 0) AS horas_turno, coalesce(ta.horas, 0) AS horas_tarea, coalesce(ta.tareas, 0) AS tareas
      FROM efectivos e
      LEFT JOIN turno_h th ON th.efectivo_id = e.id
      LEFT JOIN tarea_h ta ON ta.efectivo_id = e.id
     WHERE (CAST(:unidad AS text) IS NULL OR e.unidad = :unidad) AND (th.efectivo_id IS NOT NULL OR ta.efectivo_id IS NOT NULL OR e.activo)
     ORDER BY e.unidad NULLS LAST, e.codigo_interno
    """
).bindparams(*_TYPES)


def carga(actor: Usuario, filtro: Filtro) -> dict[str, Any]:
    """Hours on shift, hours on tareas and tareas worked, per efectivo and per unidad, inside [desde, hasta)."""
    _require(actor)
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
        for r in db.session.execute(_CARGA, filtro.params())
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
_EXPORT = f"WITH {_TAREAS_CTE} SELECT * FROM base ORDER BY created_at, id"
STREAM_BATCH = 2000


def check_export(actor: Usuario) -> None:
    _require(actor)


def tareas_csv(filtro: Filtro, tz: ZoneInfo) -> Iterator[str]:
    """The tareas of a report, one CSV line each, read through a server-side cursor in batches: memory
    stays flat whatever the number of rows. Call ``check_export`` first (this runs after the response starts)."""
    writer, line = _writer()
    writer.writerow(TAREAS_CSV_COLUMNS)
    yield BOM + line.value
    connection = db.session.connection(execution_options={"stream_results": True, "yield_per": STREAM_BATCH})
    result = connection.execute(text(_EXPORT).bindparams(*_TYPES), filtro.params())
    chunk: list[str] = []
    for r in result:
        writer.writerow(
            (
                r.id,
                r.codigo,
                r.titulo,
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
            row([e["efectivo_id"], e["codigo_interno"], e["nombre"], e["unidad"] or "", *horas, e["tareas"]])
    return out.getvalue()
