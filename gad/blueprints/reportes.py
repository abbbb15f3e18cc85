"""Reports (JSON, CSV, a printable page with SVG charts) and the audit export."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, Response, abort, current_app, request, stream_with_context
from werkzeug.wrappers import Response as WerkzeugResponse

from gad.blueprints.http import json_response, parse_query
from gad.blueprints.pages import _login_redirect, _render
from gad.errors import ValidationProblem, field_error
from gad.models import Usuario, utcnow
from gad.openapi import documented
from gad.policy import is_supervisor
from gad.schemas.common import TIME_WINDOW
from gad.schemas.reportes import AuditExportQuery, ReportOut, ReportQuery
from gad.security import current_user, page_user, require_authentication
from gad.services import auditoria_export, reportes
from gad.services.turnos import zona
from gad.vocab import TIEMPO_MAX, TIEMPO_MIN, TipoTarea

bp = Blueprint("reportes", __name__, url_prefix="/api/v1")
bp.before_request(require_authentication)
pages = Blueprint("informes", __name__)

DEFAULT_DAYS = 30


def _instant(value: str | None, field: str, *, end: bool = False) -> datetime | None:
    """An ISO instant with offset, or a local calendar day (YYYY-MM-DD: its midnight; for ``hasta`` the next one)."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + (timedelta(days=1) if end else timedelta())
            return _utc(datetime.combine(day, time.min, zona()), field)
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise ValidationProblem(
            "Invalid date.", errors=[{"field": f"query.{field}", "message": "expected YYYY-MM-DD or an ISO 8601 instant", "type": "date"}]
        ) from None
    if parsed.tzinfo is None:
        raise ValidationProblem("Invalid date.", errors=[{"field": f"query.{field}", "message": "an instant needs a UTC offset", "type": "date"}])
    return _utc(parsed, field)


def _utc(value: datetime | None, field: str) -> datetime | None:
    """In UTC before any query: PostgreSQL refuses offsets beyond ±15:59, and a streamed body cannot turn
    a late database error into a problem response."""
    if value is None:
        return None
    # Compared before converting (as gad.schemas.common does): a day at the calendar's edge overflows astimezone(),
    # and one outside the stored window overflowed the report's local days.
    if not TIEMPO_MIN <= value < TIEMPO_MAX:
        raise ValidationProblem(
            "Invalid date.", errors=[field_error(f"query.{field}", "date", f"must be {TIME_WINDOW}", es="Fecha fuera del intervalo admitido.")]
        )
    return value.astimezone(UTC)


def _filtro(q: ReportQuery) -> reportes.Filtro:
    hasta = _instant(q.hasta, "hasta", end=True) or utcnow()
    desde = _instant(q.desde, "desde") or hasta - timedelta(days=DEFAULT_DAYS)
    if desde >= hasta:
        raise ValidationProblem("Empty range.", errors=[field_error("query.hasta", "range", "must be after desde", es="«Hasta» debe ser posterior a «desde».")])
    return reportes.Filtro(desde, hasta, [str(t) for t in q.tipo] if q.tipo else None, q.prioridad or None, q.unidad or None)


def _report(kind: str, actor: Usuario, q: ReportQuery) -> dict[str, Any]:
    filtro = _filtro(q)
    if kind == "tiempos":
        return reportes.tiempos(actor, filtro, q.agrupar)
    if kind == "resultados":
        return reportes.resultados(actor, filtro, q.agrupar)
    return reportes.carga(actor, filtro)


def _csv_headers(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


def _answer(kind: str) -> Response:
    q = parse_query(ReportQuery, list_fields=("tipo", "prioridad"))
    data = _report(kind, current_user(), q)
    if q.formato == "csv":
        body = reportes.resumen_csv(data, kind)
        return current_app.response_class(body, mimetype="text/csv", content_type=reportes.CSV_MEDIA_TYPE, headers=_csv_headers(f"gad-{kind}.csv"))
    return json_response(data)


@bp.get("/reportes/tiempos")
@documented(tags=("reportes",), query=ReportQuery, resp={"HTTP_200": ReportOut})
def report_tiempos() -> Response:
    return _answer("tiempos")


@bp.get("/reportes/carga")
@documented(tags=("reportes",), query=ReportQuery, resp={"HTTP_200": ReportOut})
def report_carga() -> Response:
    return _answer("carga")


@bp.get("/reportes/resultados")
@documented(tags=("reportes",), query=ReportQuery, resp={"HTTP_200": ReportOut})
def report_resultados() -> Response:
    return _answer("resultados")


@bp.get("/reportes/tareas.csv")
@documented(tags=("reportes",), query=ReportQuery, resp={"HTTP_200": None})
def report_tareas_csv() -> Response:
    """Every tarea of the report as a CSV line, streamed (constant memory whatever the range)."""
    q = parse_query(ReportQuery, list_fields=("tipo", "prioridad"))
    reportes.check_export(current_user())
    filtro = _filtro(q)
    body = stream_with_context(reportes.tareas_csv(filtro, zona()))
    return current_app.response_class(body, content_type=reportes.CSV_MEDIA_TYPE, headers=_csv_headers("gad-tareas.csv"))


@bp.get("/auditoria/export")
@documented(tags=("audit",), query=AuditExportQuery, resp={"HTTP_200": None})
def audit_export() -> Response:
    """Administradores: the event log of a range as JSON Lines, checkable offline (see README)."""
    q = parse_query(AuditExportQuery)
    auditoria_export.check_export(current_user())
    body = stream_with_context(auditoria_export.export_lines(q.desde, q.hasta))  # UtcDatetime: in the window, in UTC
    return current_app.response_class(body, content_type=auditoria_export.MEDIA_TYPE, headers=_csv_headers("gad-auditoria.jsonl"))


@pages.get("/informes")
def informes_page() -> WerkzeugResponse | str:
    """The printable report: tables and server-drawn SVG charts, so print and PDF need no script."""
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    if not is_supervisor(usuario):
        abort(403)
    q = parse_query(ReportQuery, list_fields=("tipo", "prioridad"))
    filtro = _filtro(q)
    tiempos = reportes.tiempos(usuario, filtro, q.agrupar)
    resultados = reportes.resultados(usuario, filtro, q.agrupar)
    carga = reportes.carga(usuario, filtro)
    tz = zona()
    return _render(
        "informes.html",
        usuario,
        filtro=filtro,
        desde_local=filtro.desde.astimezone(tz).date().isoformat(),
        hasta_local=(filtro.hasta.astimezone(tz) - timedelta(microseconds=1)).date().isoformat(),
        agrupar=q.agrupar,
        tipos=[t.value for t in TipoTarea],
        tiempos=tiempos,
        resultados=resultados,
        carga=carga,
        query_string=request.query_string.decode(),
        charts=reportes_charts(tiempos, resultados, carga),
    )


def reportes_charts(tiempos: dict[str, Any], resultados: dict[str, Any], carga: dict[str, Any]) -> dict[str, Any]:
    from gad import graficos

    return {
        "tendencia": graficos.linea(
            tiempos["por_dia"], "dia", [("inicio_p50", "p50 creación→inicio"), ("inicio_p90", "p90 creación→inicio")], escala=1 / 60, unidad="min"
        ),
        "volumen": graficos.barras([(d["dia"][5:], d["n"]) for d in tiempos["por_dia"]], "tareas creadas"),
        "tiempos": graficos.barras_agrupadas(
            [(str(g["grupo"]), [(g["inicio"]["p50"] or 0) / 60, (g["inicio"]["p90"] or 0) / 60]) for g in tiempos["grupos"]], ["p50", "p90"], unidad="min"
        ),
        "resultados": graficos.apiladas(
            [(str(g["grupo"]), [g["finalizadas"], g["canceladas"], g["abiertas"]]) for g in resultados["grupos"]], ["finalizadas", "canceladas", "abiertas"]
        ),
        "carga": graficos.barras_agrupadas(
            [(str(u["unidad"] or "sin unidad"), [u["horas_turno"], u["horas_tarea"]]) for u in carga["unidades"]],
            ["horas de turno", "horas en tareas"],
            unidad="h",
        ),
    }
