"""notificaciones.causa takes 'desasignacion': the efectivo a supervisor takes off a tarea is told.

Reviewed by hand: the causa_valida CHECK is replaced by one that lists the new causa as well (no row
changes; PostgreSQL validates the existing rows, which all hold an older causa). Downgrade restores the old
CHECK and refuses while any 'desasignacion' row exists: no older causa means "you were taken off this
tarea" (recasting them as another would tell the board and the reports something that did not happen), and
deleting the ledger's rows silently is not a migration's call. The refusal says how many there are and the
statement that removes them (their notificacion_entregas go with them, ON DELETE CASCADE; no notification
points at one through origen_id, since a desasignacion never escalates).

Revision ID: 0004k
Revises: 0004h
Create Date: 2026-11-30 16:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0004k"
down_revision = "0004h"
branch_labels = None
depends_on = None

OLD = "'asignacion', 'emergencia', 'alerta', 'escalacion', 'rechazo'"
NEW = OLD + ", 'desasignacion'"
NAME = "ck_notificaciones_causa_valida"


def _replace_check(causas: str) -> None:
    # Dropped and added in one transaction (alembic runs each revision in one on PostgreSQL): no writer sees
    # the table without the constraint. The full name, as 0004g created it (op.f: the metadata's naming convention must not prefix it again).
    op.drop_constraint(op.f(NAME), "notificaciones", type_="check")
    op.create_check_constraint(op.f(NAME), "notificaciones", f"causa IN ({causas})")


def upgrade():
    _replace_check(NEW)


def downgrade():
    rows = op.get_bind().scalar(sa.text("SELECT count(*) FROM notificaciones WHERE causa = 'desasignacion'"))
    if rows:
        raise RuntimeError(
            f"{rows} notificaciones have causa 'desasignacion', which revision 0004h does not know. Keep them by staying "
            "on 0004k, or remove them first: DELETE FROM notificaciones WHERE causa = 'desasignacion'"
        )
    _replace_check(OLD)
