"""audit chain keyed with AUDIT_KEY; anchors under a MAC; deletes only with the prune secret; security tallies.

Reviewed by hand. Before this revision the links were plain SHA-256, which anyone holding the
database's credentials can recompute after editing rows. The upgrade first checks the existing chain
under the old rule (and refuses to seal a log that already fails it), then re-seals every event with
HMAC-SHA256 under the running configuration's AUDIT_KEY, signs the pruning anchors, and replaces the
trigger's `gad.allow_prune = 'on'` door (any session could open it) with a check of the prune secret
derived from the key: the trigger stores only the SHA-256 of that secret.

security_tallies holds the open window of each repeated security event (gad.realtime.tallies): a plain
mutable table, outside the chain; what it counts reaches the chain as one event when the window closes.

Changing AUDIT_KEY later needs the same re-seal (downgrade to 0003 with the old key, upgrade with the new).

Revision ID: 0004d
Revises: 0004b
Create Date: 2026-11-29 23:55:00

"""
import hashlib
import hmac
import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from flask import current_app

revision = '0004d'
down_revision = '0004b'
branch_labels = None
depends_on = None

_EVENT_COLUMNS = "id, event_type, topic, entity_type, entity_id, actor_id, request_id, payload, created_at, prev_hash, hash"


def _key():
    return str(current_app.config["AUDIT_KEY"]).encode()


def _sha256_link(prev_hash, content):
    return hashlib.sha256(prev_hash.encode() + content).hexdigest()


def _hmac_link(prev_hash, content):
    return hmac.new(_key(), prev_hash.encode() + content, hashlib.sha256).hexdigest()


def _rechain(bind, check, make):
    """Walk the events after the latest anchor; verify each link with ``check`` and rewrite it with ``make``."""
    from gad.realtime.chain import GENESIS, canonical

    anchor = bind.execute(sa.text("SELECT pruned_up_to_id, last_hash FROM auditoria_anclas ORDER BY id DESC LIMIT 1")).first()
    old_prev = new_prev = anchor[1] if anchor else GENESIS
    rows = bind.execute(sa.text(f"SELECT {_EVENT_COLUMNS} FROM eventos WHERE id > :after ORDER BY id"), {"after": anchor[0] if anchor else 0}).mappings().all()
    bind.execute(sa.text("ALTER TABLE eventos DISABLE TRIGGER eventos_append_only"))
    for row in rows:
        content = canonical(**{k: row[k] for k in ("id", "event_type", "topic", "entity_type", "entity_id", "actor_id", "request_id", "created_at")},
                            payload=json.loads(json.dumps(row["payload"])))
        if row["prev_hash"] != old_prev or check(old_prev, content) != row["hash"]:
            raise RuntimeError(
                f"event {row['id']} fails the audit chain as it stands; refusing to re-seal a log that was altered "
                "(run `flask gad audit verify` on the previous release and investigate)"
            )
        digest = make(new_prev, content)
        bind.execute(sa.text("UPDATE eventos SET prev_hash = :p, hash = :h WHERE id = :id"), {"p": new_prev, "h": digest, "id": row["id"]})
        old_prev, new_prev = row["hash"], digest
    bind.execute(sa.text("ALTER TABLE eventos ENABLE TRIGGER eventos_append_only"))
    bind.execute(sa.text("UPDATE eventos_contador SET last_hash = :h WHERE id = 1"), {"h": new_prev})


def upgrade():
    from gad.realtime.chain import anchor_mac, prune_secret_digest

    op.create_table(
        'security_tallies',
        sa.Column('kind', sa.String(length=50), nullable=False),
        sa.Column('source', sa.String(length=300), nullable=False),
        sa.Column('actor_id', sa.Integer(), nullable=True),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.Column('samples', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('window_end', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('kind', 'source', name=op.f('pk_security_tallies')),
    )
    op.create_index(op.f('ix_security_tallies_window_end'), 'security_tallies', ['window_end'], unique=False)

    bind = op.get_bind()
    _rechain(bind, _sha256_link, _hmac_link)

    op.add_column('auditoria_anclas', sa.Column('mac', sa.String(length=64), nullable=True))
    for anchor in bind.execute(sa.text("SELECT id, pruned_up_to_id, last_hash, pruned_count, actor, created_at FROM auditoria_anclas")).mappings().all():
        mac = anchor_mac(_key(), **{k: anchor[k] for k in ("pruned_up_to_id", "last_hash", "pruned_count", "actor", "created_at")})
        bind.execute(sa.text("UPDATE auditoria_anclas SET mac = :m WHERE id = :id"), {"m": mac, "id": anchor["id"]})
    op.alter_column('auditoria_anclas', 'mac', nullable=False)

    # The digest is a constant of the function body: a session that does not know the secret cannot pass.
    digest = prune_secret_digest(_key())
    op.execute(f"""
        CREATE OR REPLACE FUNCTION gad_eventos_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND encode(sha256(convert_to(coalesce(current_setting('gad.prune_secret', true), ''), 'UTF8')), 'hex')
                    = '{digest}' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'eventos is append-only: % refused (use flask gad audit prune)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$
    """)


def downgrade():
    op.execute("""
        CREATE OR REPLACE FUNCTION gad_eventos_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF coalesce(current_setting('gad.allow_prune', true), '') = 'on' AND TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'eventos is append-only: % refused (use flask gad audit prune)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$
    """)
    op.drop_column('auditoria_anclas', 'mac')
    _rechain(op.get_bind(), _hmac_link, _sha256_link)
    op.drop_index(op.f('ix_security_tallies_window_end'), table_name='security_tallies')
    op.drop_table('security_tallies')
