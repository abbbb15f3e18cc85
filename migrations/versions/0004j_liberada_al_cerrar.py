"""asignaciones.liberada_al_cerrar: whether an assignment was released by its tarea's end.

Reviewed by hand: one boolean column, false by default, so the efectivo who worked a tarea to its end keeps
reading it while one taken off a tarea that goes on does not (docs/ARCHITECTURE.md §4). The backfill marks
the released assignments of tareas that ended (finalizada, cancelada or deleted) whose release came with
that end: the service released them in the closing transaction, at or after fin_real and within a second
of the closing history row or of deleted_at; the GRUPO_GAD importer released them at the tarea's end
(fin_real, deleted_at or updated_at). An assignment released earlier (unassigned, "no puedo") stays false.
Downgrade drops the column.

Revision ID: 0004j
Revises: 0004g
Create Date: 2026-11-30 03:05:00.000000

"""

import sqlalchemy as sa
from alembic import op


revision = "0004j"
down_revision = "0004g"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("asignaciones", sa.Column("liberada_al_cerrar", sa.Boolean(), server_default="false", nullable=False))
    op.execute(
        """
        UPDATE asignaciones AS a SET liberada_al_cerrar = true
        FROM tareas AS t
        WHERE a.tarea_id = t.id
          AND a.liberado_en IS NOT NULL
          AND (t.estado IN ('finalizada', 'cancelada') OR t.deleted_at IS NOT NULL)
          AND a.liberado_en >= LEAST(
                t.fin_real,
                t.deleted_at - interval '1 second',
                t.updated_at - interval '1 second',
                (SELECT max(h.created_at) FROM historial_estados AS h
                  WHERE h.tarea_id = t.id AND h.estado_nuevo IN ('finalizada', 'cancelada')) - interval '1 second'
              )
        """
    )


def downgrade():
    op.drop_column("asignaciones", "liberada_al_cerrar")
