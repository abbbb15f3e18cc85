"""procedencias: provenance of rows imported from GRUPO_GAD (old id -> new id, hash of the source row).

Reviewed by hand: no foreign key on new_id (it points into different tables per entidad); the primary
key (sistema, entidad, old_id) is what makes re-runs and resumed imports idempotent.

Revision ID: 0004e
Revises: 0004f
Create Date: 2026-11-29 23:40:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0004e"
down_revision = "0004f"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "procedencias",
        sa.Column("sistema", sa.String(length=30), nullable=False),
        sa.Column("entidad", sa.String(length=30), nullable=False),
        sa.Column("old_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("new_id", sa.BigInteger(), nullable=False),
        sa.Column("source_hash", sa.String(length=64), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sistema", "entidad", "old_id", name=op.f("pk_procedencias")),
    )
    op.create_index("ix_procedencias_entidad_new_id", "procedencias", ["entidad", "new_id"], unique=False)


def downgrade():
    op.drop_index("ix_procedencias_entidad_new_id", table_name="procedencias")
    op.drop_table("procedencias")
