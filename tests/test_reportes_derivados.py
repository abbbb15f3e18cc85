"""What the reports read instead of recomputing (stored measures, copies on asignaciones) never drifts from its definition."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from gad.errors import AppError
from tests.builders import Builders

# The definitions, computed the slow way: a plain scan of tareas (measures) and a join with tareas (copies).
MEDIDAS_DIRECTAS = """
    SELECT count(*) FROM tareas t
     WHERE (t.medida_asignacion_s, t.medida_inicio_s, t.medida_ejecucion_s, t.medida_pausa_s) IS DISTINCT FROM (
           round(extract(epoch FROM t.primera_asignacion_en - t.created_at))::bigint,
           round(extract(epoch FROM t.inicio_real - t.created_at))::bigint,
           CASE WHEN t.estado = 'finalizada' THEN round(extract(epoch FROM t.fin_real - t.inicio_real))::bigint - t.tiempo_pausado_s END,
           CASE WHEN t.estado = 'finalizada' THEN t.tiempo_pausado_s::bigint END)
"""
COPIAS_DIRECTAS = """
    SELECT count(*) FROM asignaciones a JOIN tareas t ON t.id = a.tarea_id
     WHERE (a.tarea_inicio_real, a.tarea_fin_real, a.tarea_tipo, a.tarea_prioridad, a.tarea_borrada)
           IS DISTINCT FROM (t.inicio_real, t.fin_real, t.tipo, t.prioridad, t.deleted_at IS NOT NULL)
"""
# The workload of every efectivo by its definition (docstring of gad.services.reportes), joining tareas.
CARGA_DIRECTA = """
    SELECT a.efectivo_id, count(DISTINCT a.tarea_id) AS tareas,
           round(sum(greatest(0, extract(epoch FROM
                 least(coalesce(a.liberado_en, now()), coalesce(t.fin_real, now()), :hasta)
                 - CASE WHEN t.inicio_real IS NOT NULL THEN greatest(a.asignado_en, t.inicio_real, :desde) END))) / 3600, 2) AS horas
      FROM asignaciones a JOIN tareas t ON t.id = a.tarea_id
     WHERE t.deleted_at IS NULL AND a.asignado_en < :hasta AND coalesce(a.liberado_en, 'infinity') > :desde
       AND (CAST(:tipos AS text[]) IS NULL OR t.tipo = ANY(:tipos))
     GROUP BY 1
"""
# Response times by their definition: PostgreSQL's own percentile_cont over the expanded values.
TIEMPOS_DIRECTOS = """
    SELECT t.tipo, count(*) AS n,
           percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY round(extract(epoch FROM t.primera_asignacion_en - t.created_at))) AS asignacion,
           percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY round(extract(epoch FROM t.inicio_real - t.created_at))) AS inicio,
           max(round(extract(epoch FROM t.inicio_real - t.created_at))) AS inicio_max
      FROM tareas t WHERE t.deleted_at IS NULL AND t.created_at >= :desde AND t.created_at < :hasta
     GROUP BY 1
"""


# The daily trend by its definition: per local day, percentile_cont of creation → start rounded to minutes.
POR_DIA_DIRECTO = """
    SELECT (t.created_at AT TIME ZONE :tz)::date AS dia, count(*) AS n,
           percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY round(round(extract(epoch FROM t.inicio_real - t.created_at)) / 60.0) * 60) AS q
      FROM tareas t WHERE t.deleted_at IS NULL AND t.created_at >= :desde AND t.created_at < :hasta
     GROUP BY 1 ORDER BY 1
"""


def _operations(rng: random.Random, admin: Any, efectivo_ids: list[int], tarea_ids: list[int], step: int) -> None:
    """One random real operation through the services; refusals (409, 404...) are part of the sequence."""
    from gad.services import asignaciones, dispatch, efectivos, tareas, transitions
    from gad.vocab import EstadoTarea, TipoTarea

    op = rng.choice(["create", "create", "assign", "assign", "start", "pause", "resume", "finish", "cancel", "unassign", "edit", "delete", "emergency"])
    tarea_id = rng.choice(tarea_ids) if tarea_ids else None
    if op == "create" or tarea_id is None:
        tipo = rng.choice(list(TipoTarea))
        tarea_ids.append(
            tareas.create_tarea(admin, {"codigo": f"DRV-{step}", "titulo": f"Tarea derivada {step}", "tipo": tipo, "prioridad": rng.randint(1, 5)}).id
        )
    elif op == "assign":
        asignaciones.assign(admin, tarea_id, [rng.choice(efectivo_ids)], None)
    elif op in ("start", "resume"):
        transitions.transition(admin, tarea_id, EstadoTarea.EN_CURSO, None, None)
    elif op == "pause":
        transitions.transition(admin, tarea_id, EstadoTarea.PAUSADA, None, None)
    elif op == "finish":
        transitions.transition(admin, tarea_id, EstadoTarea.FINALIZADA, None, None)
    elif op == "cancel":
        transitions.transition(admin, tarea_id, EstadoTarea.CANCELADA, "prueba", None)
    elif op == "unassign":
        asignaciones.unassign(admin, tarea_id, rng.choice(efectivo_ids), None)
    elif op == "edit":
        tareas.update_tarea(admin, tarea_id, {"tipo": rng.choice(list(TipoTarea)), "prioridad": rng.randint(1, 5)}, None)
    elif op == "delete":
        tareas.delete_tarea(admin, tarea_id, None)
    else:
        efectivo_id = rng.choice(efectivo_ids)
        efectivos.set_ubicacion(admin, efectivo_id, 40.4 + rng.random() / 100, -3.7 + rng.random() / 100)
        result = dispatch.raise_emergency(admin, 40.4, -3.7, descripcion=None, tipo=TipoTarea.EMERGENCIA, prioridad=5, efectivos=rng.randint(1, 2))
        tarea_ids.append(result.tarea["id"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_service_operations_keep_report_columns_equal_to_their_definitions(app: Flask, build: Builders, seed: int) -> None:
    from gad.extensions import db
    from gad.models import Usuario
    from gad.services import reportes
    from gad.services.turnos import zona
    from gad.vocab import TipoTarea

    admin_id = build.usuario(3).id
    efectivo_ids = [build.efectivo(unidad=f"Móvil {i % 2}").id for i in range(12)]
    rng = random.Random(seed)
    desde, hasta = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1)
    with app.app_context():
        admin = db.session.get(Usuario, admin_id)
        assert admin is not None
        tarea_ids: list[int] = []
        for step in range(120):
            savepoint = db.session.begin_nested()
            try:
                _operations(rng, admin, efectivo_ids, tarea_ids, step)
                savepoint.commit()
            except AppError:
                savepoint.rollback()
            if step % 20 == 19:
                db.session.commit()  # some steps in later transactions, as requests would be
        # A writer that bypasses the services cannot put anything else in the copies either.
        db.session.execute(text("UPDATE asignaciones SET tarea_tipo = 'administrativa', tarea_borrada = true"))
        assert db.session.scalar(text(MEDIDAS_DIRECTAS)) == 0
        assert db.session.scalar(text(COPIAS_DIRECTAS)) == 0
        assert db.session.scalar(text("SELECT count(*) FROM asignaciones")) >= 10
        assert db.session.scalar(text("SELECT count(*) FROM tareas WHERE medida_ejecucion_s IS NOT NULL")) > 0

        # The reports answer from those columns what the definitions give from a plain scan or join.
        for tipos in (None, [TipoTarea.PATRULLAJE.value, TipoTarea.EMERGENCIA.value]):
            filtro = reportes.Filtro(desde=desde, hasta=hasta, tipos=tipos)
            params = filtro.params()
            expected = {r.efectivo_id: (r.tareas, float(r.horas)) for r in db.session.execute(text(CARGA_DIRECTA).bindparams(*reportes._TYPES[:3]), params)}
            got = {e["efectivo_id"]: (e["tareas"], e["horas_tarea"]) for e in reportes.carga(admin, filtro)["efectivos"] if e["tareas"]}
            assert got == expected
        report = reportes.tiempos(admin, reportes.Filtro(desde=desde, hasta=hasta))
        grupos = {g["grupo"]: g for g in report["grupos"]}
        for row in db.session.execute(text(TIEMPOS_DIRECTOS).bindparams(*reportes._TYPES[:2]), {"desde": desde, "hasta": hasta}):
            grupo = grupos[row.tipo]
            assert grupo["n"] == row.n
            for medida, cuantiles in (("asignacion", row.asignacion), ("inicio", row.inicio)):
                assert [grupo[medida]["p50"], grupo[medida]["p90"]] == [None if q is None else round(q, 1) for q in cuantiles or [None, None]]
            assert grupo["inicio"]["max"] == (None if row.inicio_max is None else round(float(row.inicio_max), 1))
        assert sum(d["n"] for d in report["por_dia"]) == report["total"]["n"] == sum(g["n"] for g in report["grupos"])
        # With a unidad (the histogram then materialises its tareas once): the tareas one of its efectivos worked.
        con_unidad = reportes.tiempos(admin, reportes.Filtro(desde=desde, hasta=hasta, unidad="Móvil 0"))
        assert con_unidad["total"]["n"] == db.session.scalar(
            text(
                "SELECT count(DISTINCT t.id) FROM tareas t JOIN asignaciones a ON a.tarea_id = t.id JOIN efectivos e ON e.id = a.efectivo_id"
                " WHERE e.unidad = 'Móvil 0' AND t.deleted_at IS NULL"
            )
        )
        por_dia = db.session.execute(text(POR_DIA_DIRECTO).bindparams(*reportes._TYPES[:2]), {"desde": desde, "hasta": hasta, "tz": str(zona())})
        assert report["por_dia"] == [
            {
                "dia": r.dia.isoformat(),
                "n": r.n,
                "inicio_p50": None if r.q is None else round(r.q[0], 1),
                "inicio_p90": None if r.q is None else round(r.q[1], 1),
            }
            for r in por_dia
        ]
        db.session.rollback()


def test_copies_follow_a_tarea_changed_outside_the_services(app: Flask, build: Builders) -> None:
    """An importer or an operator's SQL that moves a tarea's times moves its assignments' copies too."""
    from gad.extensions import db

    sup = build.usuario(2)
    tarea = build.tarea(sup, inicio_programado=None, fin_programado=None, estado="en_curso", inicio_real=datetime(2026, 6, 1, 10, tzinfo=UTC))
    build.asignacion_historica(tarea, build.efectivo(), datetime(2026, 6, 1, 9, tzinfo=UTC), None)
    with app.app_context():
        db.session.execute(
            text(
                "UPDATE tareas SET estado = 'finalizada', fin_real = inicio_real + interval '1 hour', cerrada_en = inicio_real + interval '1 hour', tipo = 'vigilancia' WHERE id = :id"
            ),
            {"id": tarea.id},
        )
        assert db.session.scalar(text(COPIAS_DIRECTAS)) == 0
        row = db.session.execute(text("SELECT tarea_fin_real, tarea_tipo FROM asignaciones WHERE tarea_id = :id"), {"id": tarea.id}).one()
        assert row == (datetime(2026, 6, 1, 11, tzinfo=UTC), "vigilancia")
        assert db.session.scalar(text("SELECT medida_ejecucion_s FROM tareas WHERE id = :id"), {"id": tarea.id}) == 3600
        db.session.execute(text("UPDATE tareas SET deleted_at = now() WHERE id = :id"), {"id": tarea.id})
        assert db.session.scalar(text("SELECT tarea_borrada FROM asignaciones WHERE tarea_id = :id"), {"id": tarea.id}) is True
        db.session.rollback()
