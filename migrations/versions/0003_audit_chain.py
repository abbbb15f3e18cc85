"""audit chain: hash-linked events, append-only trigger, pruning anchors.

Reviewed by hand: existing events are hashed in id order before the columns become NOT NULL, and the
trigger refuses UPDATE and DELETE on eventos unless the transaction sets gad.allow_prune (only the
documented `flask gad audit prune` command does).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 04:25:00

"""
import json

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'auditoria_anclas',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('pruned_up_to_id', sa.BigInteger(), nullable=False),
        sa.Column('last_hash', sa.String(length=64), nullable=False),
        sa.Column('pruned_count', sa.BigInteger(), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_auditoria_anclas')),
    )
    op.add_column('eventos', sa.Column('prev_hash', sa.String(length=64), nullable=True))
    op.add_column('eventos', sa.Column('hash', sa.String(length=64), nullable=True))
    op.add_column('eventos_contador', sa.Column('last_hash', sa.String(length=64), server_default='0' * 64, nullable=False))

    # Chain the events that already exist, oldest first, with the same canonical form the app uses.
    # The link of this revision is plain SHA-256 (0004d re-seals it with the audit key), kept here so
    # the revision does not change when the application's chain does.
    import hashlib

    from gad.realtime.chain import GENESIS, canonical

    def link(prev_hash, content):
        return hashlib.sha256(prev_hash.encode() + content).hexdigest()

    bind = op.get_bind()
    prev = GENESIS
    rows = bind.execute(sa.text(
        "SELECT id, event_type, topic, entity_type, entity_id, actor_id, request_id, payload, created_at FROM eventos ORDER BY id"
    )).mappings()
    for row in rows:
        digest = link(prev, canonical(**{**row, "payload": json.loads(json.dumps(row["payload"]))}))
        bind.execute(sa.text("UPDATE eventos SET prev_hash = :p, hash = :h WHERE id = :id"), {"p": prev, "h": digest, "id": row["id"]})
        prev = digest
    bind.execute(sa.text("UPDATE eventos_contador SET last_hash = :h"), {"h": prev})
    op.alter_column('eventos', 'prev_hash', nullable=False)
    op.alter_column('eventos', 'hash', nullable=False)

    op.execute("""
        CREATE FUNCTION gad_eventos_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF coalesce(current_setting('gad.allow_prune', true), '') = 'on' AND TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'eventos is append-only: % refused (use flask gad audit prune)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$
    """)
    op.execute("""
        CREATE TRIGGER eventos_append_only BEFORE UPDATE OR DELETE ON eventos
        FOR EACH ROW EXECUTE FUNCTION gad_eventos_append_only()
    """)


def downgrade():
    op.execute("DROP TRIGGER eventos_append_only ON eventos")
    op.execute("DROP FUNCTION gad_eventos_append_only()")
    op.drop_column('eventos_contador', 'last_hash')
    op.drop_column('eventos', 'hash')
    op.drop_column('eventos', 'prev_hash')
    op.drop_table('auditoria_anclas')
