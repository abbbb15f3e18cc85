"""asignaciones.liberada_al_cerrar: whether an assignment was released by its tarea's end.

Reviewed by hand: one boolean column, false by default, so the efectivo who worked a tarea to its end keeps
reading it while one taken off a tarea that goes on does not (docs/ARCHITECTURE.md §4). The backfill marks
the released assignments of tareas that ended (finalizada, cancelada or deleted) whose release came with
that end (see the comment in upgrade); an assignment released earlier (unassigned, "no puedo": the log holds
its task_unassigned event) stays false. An emptied log (pruned) cannot tell them apart: such assignments of an
ended tarea are marked, erring toward letting an efectivo read a tarea they worked.
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
    # Released by the end: the tarea ended, the release came no earlier than its fin_real (the service
    # stamps fin_real first in the closing transaction; the importer released at the end), and no
    # task_unassigned event of that efectivo was committed with it (the service's unassign and "no puedo"
    # write one in the releasing transaction, committed within moments of liberado_en).
    op.execute(
        """
        UPDATE asignaciones AS a SET liberada_al_cerrar = true
        FROM tareas AS t
        WHERE a.tarea_id = t.id
          AND a.liberado_en IS NOT NULL
          AND (t.estado IN ('finalizada', 'cancelada') OR t.deleted_at IS NOT NULL)
          AND (t.fin_real IS NULL OR a.liberado_en >= t.fin_real)
          AND NOT EXISTS (
                SELECT 1 FROM eventos AS e
                WHERE e.created_at >= a.liberado_en AND e.created_at < a.liberado_en + interval '1 minute'
                  AND e.event_type = 'task_unassigned' AND e.entity_type = 'tarea' AND e.entity_id = t.id
                  AND e.payload -> 'efectivo_ids' @> to_jsonb(a.efectivo_id)
              )
        """
    )


def downgrade():
    op.drop_column("asignaciones", "liberada_al_cerrar")
