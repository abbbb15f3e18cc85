"""tareas.cerrada_en: when a tarea became finalizada or cancelada.

Reviewed by hand. The board's closed columns showed the latest *created* closed tareas, so a patrol created last
week and finished a minute ago was missing from them; they now read the latest closed. fin_real cannot say it:
it is the work's end, and null for a tarea cancelled before it started.

The backfill takes, for each closed tarea, the moment its history says it moved into its estado (estados finales
are final: there is one such transition; an entry without estado_anterior is a creation or the importer's note of
where the state came from, written at the import), else its fin_real, else its updated_at (an imported tarea whose
source kept no history of its closing: the last thing known about it). The importer, which reads the old rows
themselves, now dates a closed tarea as it releases its assignments: fin_real, else the deletion, else updated_at,
never before its creation; a tarea imported earlier keeps the date this backfill gives it. The CHECK keeps
the column set exactly when the estado is final, and a trigger dates a close that comes without it (an older
machine still serving during the rolling deploy that runs this). The index serves the board's read (the latest
closed, estado filtered on the way); the column is written only by the update that changes the estado (which already
updates ix_tareas_estado_activas), so it costs the tarea's other updates nothing (they stay HOT).

Downgrade drops the index, the trigger, the constraint and the column.

Revision ID: 0004q
Revises: 0004p
Create Date: 2026-12-03 19:40:00.000000

"""

import sqlalchemy as sa
from alembic import op


revision = "0004q"
down_revision = "0004p"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("tareas", sa.Column("cerrada_en", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        """
        UPDATE tareas AS t SET cerrada_en = coalesce(
            (SELECT max(h.created_at) FROM historial_estados AS h WHERE h.tarea_id = t.id AND h.estado_nuevo = t.estado AND h.estado_anterior IS NOT NULL),
            t.fin_real,
            t.updated_at)
        WHERE t.estado IN ('cancelada', 'finalizada')
        """
    )
    op.create_check_constraint(op.f("ck_tareas_cerrada_en_si_cerrada"), "tareas", "(estado IN ('cancelada', 'finalizada')) = (cerrada_en IS NOT NULL)")
    # Old machines still serve while a rolling deploy runs this, and they close tareas without cerrada_en: the CHECK
    # would refuse every such close. The trigger dates any close that comes without it (theirs, or a hand-written
    # UPDATE), so the rule holds from the first moment; GAD's own transitions set it themselves.
    op.execute(
        """
        CREATE FUNCTION gad_tareas_cerrada_en() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.estado IN ('cancelada', 'finalizada') AND NEW.cerrada_en IS NULL THEN
                NEW.cerrada_en := now();
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute("CREATE TRIGGER tareas_cerrada_en BEFORE INSERT OR UPDATE OF estado ON tareas FOR EACH ROW EXECUTE FUNCTION gad_tareas_cerrada_en()")
    op.create_index(
        "ix_tareas_cerradas", "tareas", [sa.text("cerrada_en DESC NULLS LAST"), sa.text("id DESC")], postgresql_where=sa.text("deleted_at IS NULL")
    )


def downgrade():
    op.drop_index("ix_tareas_cerradas", table_name="tareas")
    op.execute("DROP TRIGGER tareas_cerrada_en ON tareas")
    op.execute("DROP FUNCTION gad_tareas_cerrada_en()")
    op.drop_constraint(op.f("ck_tareas_cerrada_en_si_cerrada"), "tareas", type_="check")
    op.drop_column("tareas", "cerrada_en")
