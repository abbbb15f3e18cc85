"""time window on tareas' instants; a sequence for emergency codes.

Reviewed by hand. A tarea with an instant outside [1900-01-01, 2200-01-01) UTC (accepted by earlier
versions, e.g. 9999-12-31T23:59:59-14:00, which is year 10000 in UTC) made every read of its row fail:
such values are meaningless, so they are set to NULL (the columns are nullable and NULL means "not
known") before the CHECK constraints are added. Emergency codes come from a sequence from now on, so
the numbering can no longer be blocked by a row someone else created.

Revision ID: 0004b
Revises: 0003
Create Date: 2026-11-29 23:50:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0004b'
down_revision = '0003'
branch_labels = None
depends_on = None

# Spelled out rather than imported: a migration must keep meaning what it meant when it was written.
COLUMNS = ("inicio_programado", "fin_programado", "inicio_real", "fin_real", "pausado_en")
LOWER = "1900-01-01T00:00:00+00:00"
UPPER = "2200-01-01T00:00:00+00:00"


def upgrade():
    for column in COLUMNS:
        op.execute(sa.text(f"UPDATE tareas SET {column} = NULL WHERE {column} < '{LOWER}' OR {column} >= '{UPPER}'"))
    # fin_real >= inicio_real must still hold once an out-of-range inicio_real is gone.
    op.execute(sa.text("UPDATE tareas SET fin_real = NULL WHERE inicio_real IS NULL AND fin_real IS NOT NULL"))
    for column in COLUMNS:
        op.create_check_constraint(op.f(f"ck_tareas_{column}_rango"), "tareas", f"{column} >= '{LOWER}' AND {column} < '{UPPER}'")
    # Seven digits keep EMG-YYYYMMDD-n within the 20 characters of a codigo; with the day in the code a
    # cycle can only meet a code of the same day, which the service skips.
    op.execute(sa.text("CREATE SEQUENCE emergencias_codigo_seq AS bigint START 1 MAXVALUE 9999999 CYCLE"))


def downgrade():
    op.execute(sa.text("DROP SEQUENCE emergencias_codigo_seq"))
    for column in COLUMNS:
        op.drop_constraint(op.f(f"ck_tareas_{column}_rango"), "tareas", type_="check")
