"""Tareas, their assignments (the only source of truth for who works what) and state history."""

import uuid as uuid_lib
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Computed, Float, ForeignKey, Index, SmallInteger, String, Text, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB, TSTZRANGE, ExcludeConstraint, Range
from sqlalchemy.orm import Mapped, mapped_column

from gad.models.base import Base, Timestamps, Versioned, utcnow
from gad.vocab import CODIGO_PATTERN, ESTADOS_FINALES, EstadoTarea, TipoTarea, sql_in, sql_in_time_window

# The instants a client or an importer can set; each is kept inside the window psycopg2 can read back.
TIEMPOS_ACOTADOS = ("inicio_programado", "fin_programado", "inicio_real", "fin_real", "pausado_en")

# The response-time measures of the reports (gad/services/reportes.py defines them), in whole seconds:
# STORED generated columns, so PostgreSQL computes them from the row on every write and they cannot drift.
# isfinite(): generated columns are computed before CHECKs run, so an out-of-window 'infinity' must give
# NULL here and be refused by the <column>_rango CHECK, not fail converting infinity to bigint.
MEDIDAS_SQL = {
    "medida_asignacion_s": "CASE WHEN isfinite(primera_asignacion_en) THEN round(EXTRACT(epoch FROM primera_asignacion_en - created_at))::bigint END",
    "medida_inicio_s": "CASE WHEN isfinite(inicio_real) THEN round(EXTRACT(epoch FROM inicio_real - created_at))::bigint END",
    "medida_ejecucion_s": "CASE WHEN estado = 'finalizada' AND isfinite(fin_real) AND isfinite(inicio_real)"
    " THEN round(EXTRACT(epoch FROM fin_real - inicio_real))::bigint - tiempo_pausado_s END",
    "medida_pausa_s": "CASE WHEN estado = 'finalizada' THEN tiempo_pausado_s::bigint END",
}


def _medida(name: str) -> Mapped[int | None]:
    return mapped_column(BigInteger, Computed(MEDIDAS_SQL[name], persisted=True), deferred=True)


def _copia_de_tarea(*type_: Any) -> Any:
    """What the workload report reads of each assignment's tarea: written by triggers only (see Asignacion),
    never loaded with the row (deferred) and never set by the ORM (an INSERT without them gets them)."""
    return mapped_column(*type_, deferred=True)


class Tarea(Timestamps, Versioned, Base):
    __tablename__ = "tareas"
    __table_args__ = (
        CheckConstraint(f"codigo ~ '{CODIGO_PATTERN}'", name="codigo_formato"),
        CheckConstraint("char_length(titulo) >= 5", name="titulo_longitud"),
        CheckConstraint(f"tipo IN ({sql_in(TipoTarea)})", name="tipo_valido"),
        CheckConstraint(f"estado IN ({sql_in(EstadoTarea)})", name="estado_valido"),
        CheckConstraint("prioridad BETWEEN 1 AND 5", name="prioridad_rango"),
        CheckConstraint("fin_programado IS NULL OR inicio_programado IS NULL OR fin_programado > inicio_programado", name="programacion_coherente"),
        CheckConstraint("fin_real IS NULL OR (inicio_real IS NOT NULL AND fin_real >= inicio_real)", name="fechas_reales_coherentes"),
        CheckConstraint("(ubicacion_lat IS NULL) = (ubicacion_lon IS NULL)", name="ubicacion_completa"),
        CheckConstraint(
            "ubicacion_lat IS NULL OR (ubicacion_lat BETWEEN -90 AND 90 AND ubicacion_lon BETWEEN -180 AND 180)",
            name="ubicacion_rango",
        ),
        CheckConstraint("tiempo_pausado_s >= 0", name="tiempo_pausado_positivo"),
        CheckConstraint(f"(estado IN ({sql_in(sorted(ESTADOS_FINALES))})) = (cerrada_en IS NOT NULL)", name="cerrada_en_si_cerrada"),
        *(CheckConstraint(sql_in_time_window(column), name=f"{column}_rango") for column in TIEMPOS_ACOTADOS),
        Index("ix_tareas_estado_activas", "estado", postgresql_where=text("deleted_at IS NULL")),
        # The board's closed columns: the latest closed, read off the index in the list's order (ORDER BY cerrada_en DESC
        # NULLS LAST, id DESC) with the estado filtered on the way. Led by estado, or with `cerrada_en IS NOT NULL` in
        # its predicate, PostgreSQL could not use it for `estado = ANY(...)` and sorted the whole table instead.
        Index("ix_tareas_cerradas", text("cerrada_en DESC NULLS LAST"), text("id DESC"), postgresql_where=text("deleted_at IS NULL")),
        Index("ix_tareas_created_at", "created_at"),  # reports select tareas by creation time
        # A year of response times is index-only scans of this (a fifth of the heap), not of the wide rows.
        Index("ix_tareas_reportes", "created_at", postgresql_include=["id", "tipo", "prioridad", *MEDIDAS_SQL], postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid_lib.UUID] = mapped_column(Uuid, default=uuid_lib.uuid4, unique=True)
    codigo: Mapped[str] = mapped_column(String(20), unique=True)
    titulo: Mapped[str] = mapped_column(String(200))
    descripcion: Mapped[str | None] = mapped_column(Text)
    tipo: Mapped[str] = mapped_column(String(20))
    prioridad: Mapped[int] = mapped_column(SmallInteger, default=2)
    estado: Mapped[str] = mapped_column(String(20), default=EstadoTarea.PROGRAMADA.value)
    es_emergencia: Mapped[bool] = mapped_column(default=False, server_default="false")
    inicio_programado: Mapped[datetime | None] = mapped_column(index=True)
    fin_programado: Mapped[datetime | None]
    inicio_real: Mapped[datetime | None]
    fin_real: Mapped[datetime | None]
    pausado_en: Mapped[datetime | None]
    # When the first efectivo was assigned (set once by assignment and dispatch): the reports' "creation →
    # first assignment" without aggregating asignaciones for every tarea of a range.
    primera_asignacion_en: Mapped[datetime | None]
    tiempo_pausado_s: Mapped[int] = mapped_column(default=0, server_default="0")
    # Deferred: only the reports' SQL reads them, and loading a tarea never fetches them.
    medida_asignacion_s: Mapped[int | None] = _medida("medida_asignacion_s")
    medida_inicio_s: Mapped[int | None] = _medida("medida_inicio_s")
    medida_ejecucion_s: Mapped[int | None] = _medida("medida_ejecucion_s")
    medida_pausa_s: Mapped[int | None] = _medida("medida_pausa_s")
    ubicacion_lat: Mapped[float | None] = mapped_column(Float)
    ubicacion_lon: Mapped[float | None] = mapped_column(Float)
    ubicacion_descripcion: Mapped[str | None] = mapped_column(String(300))
    delegado_usuario_id: Mapped[int | None] = mapped_column(ForeignKey("usuarios.id"), index=True)
    creado_por_usuario_id: Mapped[int] = mapped_column(ForeignKey("usuarios.id"))
    notas: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    deleted_at: Mapped[datetime | None]
    # When it became finalizada or cancelada (fin_real is the work's end, and null for a tarea never started).
    # Written once, in the update that changes its estado, which already updates an index: its own index costs
    # the tarea's other updates nothing (they stay HOT).
    cerrada_en: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<Tarea {self.id} {self.codigo} {self.estado}>"


class Asignacion(Base):
    __tablename__ = "asignaciones"
    __table_args__ = (
        # The database, not the application, guarantees an efectivo works one unscheduled tarea at a time...
        Index("uq_asignaciones_efectivo_activa", "efectivo_id", unique=True, postgresql_where=text("liberado_en IS NULL AND periodo IS NULL")),
        # ...and that the windows it is booked for on scheduled tareas never overlap (issue 17: reservations).
        ExcludeConstraint(("efectivo_id", "="), ("periodo", "&&"), name="ex_asignaciones_reserva_sin_solape", using="gist", where=text("liberado_en IS NULL")),
        CheckConstraint("liberado_en IS NULL OR liberado_en >= asignado_en", name="periodo_coherente"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tarea_id: Mapped[int] = mapped_column(ForeignKey("tareas.id"), index=True)
    efectivo_id: Mapped[int] = mapped_column(ForeignKey("efectivos.id"), index=True)
    asignado_por_usuario_id: Mapped[int | None] = mapped_column(ForeignKey("usuarios.id"))
    asignado_en: Mapped[datetime] = mapped_column(default=utcnow)
    liberado_en: Mapped[datetime | None]
    # The booked window: the tarea's [inicio_programado, fin_programado) when it has both, else NULL.
    periodo: Mapped[Range[datetime] | None] = mapped_column(TSTZRANGE)
    # Booked while the efectivo had no turno covering the window (allowed unless DESPACHO_REQUIERE_SERVICIO).
    fuera_de_turno: Mapped[bool] = mapped_column(default=False, server_default="false")
    # Released because its tarea ended (finished, cancelled or deleted), not taken off a tarea that goes on:
    # the efectivo keeps reading a tarea they worked to its end (gad.services.tarea_queries.READS_THROUGH).
    liberada_al_cerrar: Mapped[bool] = mapped_column(default=False, server_default="false")
    # Copies of the tarea's columns the workload report needs, so it does not join a million tareas.
    # Never written by the application: triggers (migration 0004h) copy them from the tarea on insert
    # and push every change of the tarea to its assignments, whoever writes.
    tarea_inicio_real: Mapped[datetime | None] = _copia_de_tarea()
    tarea_fin_real: Mapped[datetime | None] = _copia_de_tarea()
    tarea_tipo: Mapped[str] = _copia_de_tarea(String(20))
    tarea_prioridad: Mapped[int] = _copia_de_tarea(SmallInteger)
    tarea_borrada: Mapped[bool] = _copia_de_tarea()

    def __repr__(self) -> str:
        return f"<Asignacion tarea={self.tarea_id} efectivo={self.efectivo_id} activa={self.liberado_en is None}>"


class HistorialEstado(Base):
    __tablename__ = "historial_estados"

    id: Mapped[int] = mapped_column(primary_key=True)
    tarea_id: Mapped[int] = mapped_column(ForeignKey("tareas.id"), index=True)
    estado_anterior: Mapped[str | None] = mapped_column(String(20))
    estado_nuevo: Mapped[str] = mapped_column(String(20))
    usuario_id: Mapped[int | None] = mapped_column(ForeignKey("usuarios.id"))
    motivo: Mapped[str | None] = mapped_column(String(500))
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<HistorialEstado tarea={self.tarea_id} {self.estado_anterior}->{self.estado_nuevo}>"
