"""reports over a million tareas: measures stored on the tarea, the tarea's times copied onto its assignments.

Reviewed by hand:
- The four response-time measures become STORED generated columns of tareas, computed by PostgreSQL
  from the row itself with the expressions the reports used to evaluate per report (so no
  writer can make them drift), and a narrow covering index on created_at (partial: live tareas) lets
  tiempos read a year with index-only scans (a fifth of the heap's pages) instead of the wide rows.
  The expressions yield NULL for an infinite instant, which the <column>_rango CHECKs then refuse
  (generated columns are computed before CHECKs, and infinity does not convert to bigint).
- The workload report needs, per assignment, its tarea's start, finish, tipo, prioridad and whether it
  was deleted. Joining a million tareas per report was most of its cost, so asignaciones carry copies
  that triggers keep equal to the tarea: a BEFORE trigger on asignaciones copies them from the tarea on
  every insert and on any write to the copies (so they cannot be set to anything else), holding the
  tarea FOR SHARE so a concurrent start/finish waits for the new assignment to commit; an AFTER
  trigger on tareas pushes a change of those five columns to the tarea's assignments. Every writer
  (services, importer, seed, raw SQL) goes through them.
- Upgrade rewrites tareas once (generated columns) and backfills asignaciones with one UPDATE.
  Downgrade drops the triggers, functions, indexes and columns.

Revision ID: 0004h
Revises: 0004j
Create Date: 2026-11-30 02:45:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0004h"
down_revision = "0004j"
branch_labels = None
depends_on = None

# The same text as gad/models/tarea.py (MEDIDAS_SQL); copied so this revision never changes with the model.
_MEDIDAS = {
    "medida_asignacion_s": "CASE WHEN isfinite(primera_asignacion_en) THEN round(EXTRACT(epoch FROM primera_asignacion_en - created_at))::bigint END",
    "medida_inicio_s": "CASE WHEN isfinite(inicio_real) THEN round(EXTRACT(epoch FROM inicio_real - created_at))::bigint END",
    "medida_ejecucion_s": "CASE WHEN estado = 'finalizada' AND isfinite(fin_real) AND isfinite(inicio_real)"
    " THEN round(EXTRACT(epoch FROM fin_real - inicio_real))::bigint - tiempo_pausado_s END",
    "medida_pausa_s": "CASE WHEN estado = 'finalizada' THEN tiempo_pausado_s::bigint END",
}
_COPIAS = ("inicio_real", "fin_real", "tipo", "prioridad")


def upgrade():
    for name, expression in _MEDIDAS.items():
        op.add_column("tareas", sa.Column(name, sa.BigInteger(), sa.Computed(expression, persisted=True), nullable=True))
    op.create_index(
        "ix_tareas_reportes",
        "tareas",
        ["created_at"],
        postgresql_include=["id", "tipo", "prioridad", *_MEDIDAS],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )

    op.add_column("asignaciones", sa.Column("tarea_inicio_real", sa.DateTime(timezone=True), nullable=True))
    op.add_column("asignaciones", sa.Column("tarea_fin_real", sa.DateTime(timezone=True), nullable=True))
    op.add_column("asignaciones", sa.Column("tarea_tipo", sa.String(length=20), nullable=True))
    op.add_column("asignaciones", sa.Column("tarea_prioridad", sa.SmallInteger(), nullable=True))
    op.add_column("asignaciones", sa.Column("tarea_borrada", sa.Boolean(), nullable=True))
    # Backfill before the triggers exist (one set-based UPDATE, not a trigger call per row); the
    # agenda trigger on asignaciones does not need to re-check rows whose booking did not change.
    op.execute("ALTER TABLE asignaciones DISABLE TRIGGER asignaciones_sin_licencia")
    op.execute(
        """UPDATE asignaciones a
              SET tarea_inicio_real = t.inicio_real, tarea_fin_real = t.fin_real, tarea_tipo = t.tipo,
                  tarea_prioridad = t.prioridad, tarea_borrada = t.deleted_at IS NOT NULL
             FROM tareas t WHERE t.id = a.tarea_id"""
    )
    op.execute("ALTER TABLE asignaciones ENABLE TRIGGER asignaciones_sin_licencia")
    for column in ("tarea_tipo", "tarea_prioridad", "tarea_borrada"):
        op.alter_column("asignaciones", column, nullable=False)
    op.execute(
        """
        CREATE FUNCTION gad_asignacion_copia_tarea() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- FOR SHARE: a transaction changing the tarea's times waits for this one to commit, and then
            -- its own trigger sees (and updates) this assignment.
            SELECT t.inicio_real, t.fin_real, t.tipo, t.prioridad, t.deleted_at IS NOT NULL
              INTO NEW.tarea_inicio_real, NEW.tarea_fin_real, NEW.tarea_tipo, NEW.tarea_prioridad, NEW.tarea_borrada
              FROM tareas t WHERE t.id = NEW.tarea_id FOR SHARE;
            RETURN NEW;
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER asignaciones_copia_tarea BEFORE INSERT OR UPDATE OF tarea_id, tarea_inicio_real, tarea_fin_real, "
        "tarea_tipo, tarea_prioridad, tarea_borrada ON asignaciones FOR EACH ROW EXECUTE FUNCTION gad_asignacion_copia_tarea()"
    )
    op.execute(
        """
        CREATE FUNCTION gad_tarea_copia_a_asignaciones() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE asignaciones
               SET tarea_inicio_real = NEW.inicio_real, tarea_fin_real = NEW.fin_real, tarea_tipo = NEW.tipo,
                   tarea_prioridad = NEW.prioridad, tarea_borrada = NEW.deleted_at IS NOT NULL
             WHERE tarea_id = NEW.id;
            RETURN NULL;
        END;
        $$
        """
    )
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _COPIAS)
    op.execute(
        "CREATE TRIGGER tareas_copia_a_asignaciones AFTER UPDATE OF inicio_real, fin_real, tipo, prioridad, deleted_at ON tareas "
        f"FOR EACH ROW WHEN ({changed} OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)) "
        "EXECUTE FUNCTION gad_tarea_copia_a_asignaciones()"
    )


def downgrade():
    op.execute("DROP TRIGGER tareas_copia_a_asignaciones ON tareas")
    op.execute("DROP FUNCTION gad_tarea_copia_a_asignaciones()")
    op.execute("DROP TRIGGER asignaciones_copia_tarea ON asignaciones")
    op.execute("DROP FUNCTION gad_asignacion_copia_tarea()")
    for column in ("tarea_borrada", "tarea_prioridad", "tarea_tipo", "tarea_fin_real", "tarea_inicio_real"):
        op.drop_column("asignaciones", column)
    op.drop_index("ix_tareas_reportes", table_name="tareas")
    for name in reversed(list(_MEDIDAS)):
        op.drop_column("tareas", name)
