"""Reports against hand-computed values on a fixture with known times (pauses, cancellations, emergencies)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gad.models import Tarea
from tests.builders import Builders

T = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)
RANGE = "desde=2026-06-01T00:00:00%2B00:00&hasta=2026-07-01T00:00:00%2B00:00"
M = timedelta(minutes=1)


def _tarea(build: Builders, sup: Any, created: datetime, **values: Any) -> Tarea:
    return build.tarea(sup, created_at=created, inicio_programado=None, fin_programado=None, **values)


def _asignar(build: Builders, tarea: Tarea, efectivo: Any, en: datetime, hasta: datetime | None) -> None:
    build.asignacion_historica(tarea, efectivo, en, hasta)


@pytest.fixture
def fixture(build: Builders) -> dict[str, Any]:
    """Seven tareas in June 2026 and one before it; every time below is used by the expected values."""
    sup = build.usuario(2)
    x = build.efectivo(unidad="Móvil 1", nombre="Begoña Núñez")
    y = build.efectivo(unidad="Móvil 2")
    z = build.efectivo(unidad="Móvil 1")
    # A: assigned +5 min, started +10, paused 10 min in total, finished +70.
    a = _tarea(
        build, sup, T, codigo="REP-A", tipo="patrullaje", prioridad=3, estado="finalizada", inicio_real=T + 10 * M, fin_real=T + 70 * M, tiempo_pausado_s=600
    )
    _asignar(build, a, x, T + 5 * M, T + 70 * M)
    # B: assigned +15, started +20, finished +50, no pause.
    tb = T + timedelta(days=1)
    b = _tarea(build, sup, tb, codigo="REP-B", tipo="patrullaje", prioridad=2, estado="finalizada", inicio_real=tb + 20 * M, fin_real=tb + 50 * M)
    _asignar(build, b, x, tb + 15 * M, tb + 50 * M)
    # C: assigned +2, started +4, cancelled at +30.
    tc = T + timedelta(days=2)
    c = _tarea(build, sup, tc, codigo="REP-C", tipo="patrullaje", prioridad=3, estado="cancelada", inicio_real=tc + 4 * M, fin_real=tc + 30 * M)
    _asignar(build, c, y, tc + 2 * M, tc + 30 * M)
    # D: never assigned nor started, cancelled.
    _tarea(build, sup, T + timedelta(days=3), codigo="REP-D", tipo="vigilancia", prioridad=4, estado="cancelada")
    # E: emergency running since creation, nobody for 10 minutes, still open.
    te = T + timedelta(days=4)
    e = _tarea(build, sup, te, codigo="REP-E", tipo="intervencion", prioridad=5, estado="en_curso", es_emergencia=True, inicio_real=te)
    _asignar(build, e, y, te + 10 * M, None)
    # F: emergency assigned after 10 s, finished at +40 min.
    tf = T + timedelta(days=5)
    f = _tarea(build, sup, tf, codigo="REP-F", tipo="intervencion", prioridad=5, estado="finalizada", es_emergencia=True, inicio_real=tf, fin_real=tf + 40 * M)
    _asignar(build, f, z, tf + timedelta(seconds=10), tf + 40 * M)
    # G: still programada. H: created before the range.
    _tarea(build, sup, T + timedelta(days=6), codigo="REP-G", tipo="patrullaje", prioridad=1)
    _tarea(build, sup, datetime(2026, 5, 31, 23, 0, tzinfo=UTC), codigo="REP-H", tipo="patrullaje", prioridad=1, estado="finalizada", inicio_real=T, fin_real=T)
    # Turnos of X: 8 h inside the range, and one straddling its start (4 h inside).
    build.turno(x, datetime(2026, 6, 10, 8, 0, tzinfo=UTC), horas=8)
    build.turno(x, datetime(2026, 5, 31, 20, 0, tzinfo=UTC), horas=8)
    return {"sup": sup, "x": x, "y": y, "z": z}


def _get(client: FlaskClient, build: Builders, user: Any, path: str) -> Any:
    response = client.get(path, headers=build.headers(user))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response


def _stats(p50: float | None, p90: float | None, mx: float | None, n: int) -> dict[str, Any]:
    return {"n": n, "p50": p50, "p90": p90, "max": mx}


def test_response_times_match_hand_computed_percentiles(app: Flask, client: FlaskClient, build: Builders, fixture: dict[str, Any]) -> None:
    data = _get(client, build, fixture["sup"], f"/api/v1/reportes/tiempos?{RANGE}").get_json()
    grupos = {g["grupo"]: g for g in data["grupos"]}
    assert set(grupos) == {"patrullaje", "vigilancia", "intervencion"}
    pat = grupos["patrullaje"]
    assert pat["n"] == 4
    # asignacion 120, 300, 900 s -> p50 300, p90 300 + 0.8 * 600 = 780.
    assert pat["asignacion"] == _stats(300.0, 780.0, 900.0, 3)
    assert pat["inicio"] == _stats(600.0, 1080.0, 1200.0, 3)
    # ejecucion of the finalizadas only, net of pauses: A 60 - 10 min = 3000 s, B 1800 s.
    assert pat["ejecucion"] == _stats(2400.0, 2880.0, 3000.0, 2)
    assert pat["pausa"] == _stats(300.0, 540.0, 600.0, 2)
    assert grupos["vigilancia"]["n"] == 1 and grupos["vigilancia"]["asignacion"] == _stats(None, None, None, 0)
    assert grupos["intervencion"]["asignacion"] == _stats(305.0, 541.0, 600.0, 2)
    total = data["total"]
    assert total["n"] == 7
    assert total["asignacion"] == _stats(300.0, 780.0, 900.0, 5)
    assert total["inicio"] == _stats(240.0, 960.0, 1200.0, 5)
    assert total["ejecucion"] == _stats(2400.0, 2880.0, 3000.0, 3)
    assert total["pausa"] == _stats(0.0, 480.0, 600.0, 3)
    assert [d["n"] for d in data["por_dia"]] == [1, 1, 1, 1, 1, 1, 1]


def test_outcomes_count_cancellations_and_unassigned_emergencies(app: Flask, client: FlaskClient, build: Builders, fixture: dict[str, Any]) -> None:
    data = _get(client, build, fixture["sup"], f"/api/v1/reportes/resultados?{RANGE}&agrupar=prioridad").get_json()
    total = data["total"]
    assert {k: total[k] for k in ("n", "finalizadas", "canceladas", "abiertas", "emergencias", "emergencias_sin_asignar")} == {
        "n": 7,
        "finalizadas": 3,
        "canceladas": 2,
        "abiertas": 2,
        "emergencias": 2,
        "emergencias_sin_asignar": 1,
    }
    assert total["tiempo_sin_asignar"] == {"p50": 600.0, "p90": 600.0, "max": 600.0}
    assert {g["grupo"]: g["n"] for g in data["grupos"]} == {1: 1, 2: 1, 3: 2, 4: 1, 5: 2}


def test_workload_per_efectivo_and_unidad(app: Flask, client: FlaskClient, build: Builders, fixture: dict[str, Any]) -> None:
    data = _get(client, build, fixture["sup"], f"/api/v1/reportes/carga?{RANGE}").get_json()
    by_id = {e["efectivo_id"]: e for e in data["efectivos"]}
    x, y, z = (by_id[fixture[k].id] for k in ("x", "y", "z"))
    assert (x["horas_turno"], x["horas_tarea"], x["tareas"]) == (12.0, 1.5, 2)  # A 60 min (pause counts) + B 30 min
    # C: 26 min; E: from its assignment (14 June 10:10) to the end of the range, still running = 397 h 50 min.
    assert (y["horas_turno"], y["tareas"]) == (0.0, 2) and y["horas_tarea"] == round(26 / 60 + 397 + 50 / 60, 2)
    assert (z["horas_tarea"], z["tareas"]) == (round((40 * 60 - 10) / 3600, 2), 1)
    unidades = {u["unidad"]: u for u in data["unidades"]}
    assert unidades["Móvil 1"] == {"unidad": "Móvil 1", "efectivos": 2, "horas_turno": 12.0, "horas_tarea": round(1.5 + z["horas_tarea"], 2), "tareas": 3}


def test_filters_by_tipo_prioridad_and_unidad(app: Flask, client: FlaskClient, build: Builders, fixture: dict[str, Any]) -> None:
    sup = fixture["sup"]
    assert _get(client, build, sup, f"/api/v1/reportes/tiempos?{RANGE}&tipo=patrullaje").get_json()["total"]["n"] == 4
    assert _get(client, build, sup, f"/api/v1/reportes/tiempos?{RANGE}&prioridad=5&prioridad=4").get_json()["total"]["n"] == 3
    movil2 = _get(client, build, sup, f"/api/v1/reportes/resultados?{RANGE}&unidad=M%C3%B3vil%202").get_json()["total"]
    assert (movil2["n"], movil2["canceladas"], movil2["abiertas"]) == (2, 1, 1)  # C and E
    bad = client.get(f"/api/v1/reportes/tiempos?{RANGE}&agrupar=delegado", headers=build.headers(sup))
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    backwards = client.get("/api/v1/reportes/tiempos?desde=2026-07-01&hasta=2026-06-01", headers=build.headers(sup))
    assert backwards.status_code == 422
    naive = client.get("/api/v1/reportes/tiempos?desde=2026-07-01T00:00:00", headers=build.headers(sup))
    assert naive.status_code == 422 and naive.get_json()["errors"][0]["field"] == "query.desde"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("desde=0001-01-01T00:00:00Z", "query.desde"),
        ("desde=0001-01-01", "query.desde"),
        ("hasta=2200-01-01T00:00:00Z", "query.hasta"),
        ("desde=1899-12-31T23:59:59Z", "query.desde"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/reportes/tiempos", "/api/v1/reportes/carga", "/api/v1/reportes/resultados", "/api/v1/reportes/tareas.csv"])
def test_instants_outside_the_stored_window_are_422_naming_the_parameter(client: FlaskClient, build: Builders, path: str, query: str, field: str) -> None:
    """Not a 500 from the report's local days overflowing the calendar (the attacker review's year 1)."""
    response = client.get(f"{path}?{query}", headers=build.headers(build.usuario(2)))
    assert response.status_code == 422 and response.mimetype == "application/problem+json", response.get_data()[:300]
    assert [error["field"] for error in response.get_json()["errors"]] == [field]


def _rows(body: bytes) -> list[list[str]]:
    assert body.startswith("\ufeff".encode())  # BOM: Excel reads the file as UTF-8
    text = body.decode("utf-8-sig")
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def test_tareas_csv_is_spanish_spreadsheet_ready(app: Flask, client: FlaskClient, build: Builders, fixture: dict[str, Any]) -> None:
    response = _get(client, build, fixture["sup"], f"/api/v1/reportes/tareas.csv?{RANGE}")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = _rows(response.get_data())
    assert rows[0][:3] == ["id", "codigo", "titulo"] and len(rows) == 8
    a = next(r for r in rows if r[1] == "REP-A")
    header = rows[0]
    assert a[header.index("min_hasta_asignacion")] == "5,0" and a[header.index("min_ejecucion")] == "50,0" and a[header.index("min_pausa")] == "10,0"
    assert a[header.index("creada")] == "2026-06-10 12:00:00"  # Madrid wall clock (CEST)
    assert next(r for r in rows if r[1] == "REP-E")[header.index("emergencia")] == "sí"


def test_summary_csv_and_workload_csv_keep_accents(app: Flask, client: FlaskClient, build: Builders, fixture: dict[str, Any]) -> None:
    tiempos = _rows(_get(client, build, fixture["sup"], f"/api/v1/reportes/tiempos?{RANGE}&formato=csv").get_data())
    assert tiempos[-1][0] == "TOTAL" and tiempos[-1][1] == "7" and tiempos[-1][2] == "5,00"  # p50 to assignment: 300 s
    carga = _rows(_get(client, build, fixture["sup"], f"/api/v1/reportes/carga?{RANGE}&formato=csv").get_data())
    assert any(r[2] == "Begoña Núñez" and r[4] == "12,00" for r in carga)


def test_reports_are_for_supervisors(app: Flask, client: FlaskClient, build: Builders) -> None:
    field = build.usuario(1)
    for path in ("/api/v1/reportes/tiempos", "/api/v1/reportes/carga", "/api/v1/reportes/resultados", "/api/v1/reportes/tareas.csv"):
        response = client.get(path, headers=build.headers(field))
        assert response.status_code == 403 and response.mimetype == "application/problem+json"


def test_free_text_a_spreadsheet_would_run_as_a_formula_is_exported_as_text(client: FlaskClient, build: Builders) -> None:
    """CSV injection: a titulo, nombre or unidad typed as ``=HYPERLINK(…)`` must not run where the export is opened."""
    sup = build.usuario(2)
    formulas = ['=HYPERLINK("http://x.example","y")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB"]
    efectivo = build.efectivo(nombre="@Nombre", unidad="=Unidad")
    for n, titulo in enumerate(formulas):
        tarea = _tarea(
            build, sup, T + n * M, codigo=f"FORM-{n}", titulo=f"{titulo} tarea", estado="finalizada", inicio_real=T + n * M, fin_real=T + (n + 5) * M
        )
        _asignar(build, tarea, efectivo, T + n * M, T + (n + 5) * M)
    rows = _rows(_get(client, build, sup, f"/api/v1/reportes/tareas.csv?{RANGE}").get_data())
    titulos = sorted(row[2] for row in rows[1:])
    assert titulos == sorted(f"'{titulo} tarea" for titulo in formulas)
    assert all(row[1].startswith("FORM-") for row in rows[1:])  # ordinary text is left as it is
    carga = _rows(_get(client, build, sup, f"/api/v1/reportes/carga?{RANGE}&formato=csv").get_data())
    assert [(row[2], row[3]) for row in carga[1:]] == [("'@Nombre", "'=Unidad")]
