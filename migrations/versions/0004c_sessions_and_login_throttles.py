"""server-side browser sessions, login throttles per (e-mail, address) and per e-mail, rate-limit counters.

Reviewed by hand: only new tables. usuarios.intentos_fallidos / bloqueado_hasta stay (the predecessor's
data carries them) but the service no longer locks a whole account with them.

Revision ID: 0004c
Revises: 0004d
Create Date: 2026-11-29 23:55:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0004c'
down_revision = '0004d'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'sesiones',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('usuario_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('client', sa.String(length=64), nullable=True),
        sa.Column('user_agent', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['usuario_id'], ['usuarios.id'], name=op.f('fk_sesiones_usuario_id_usuarios'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sesiones')),
        sa.UniqueConstraint('secret_hash', name=op.f('uq_sesiones_secret_hash')),
    )
    op.create_index('ix_sesiones_usuario_activas', 'sesiones', ['usuario_id'], unique=False, postgresql_where='revoked_at IS NULL')
    op.create_table(
        'login_intentos',
        sa.Column('email_key', sa.String(length=64), nullable=False),
        sa.Column('cliente', sa.String(length=64), nullable=False),
        sa.Column('intentos', sa.Integer(), nullable=False),
        sa.Column('ventana_desde', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ultimo_exito', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('email_key', 'cliente', name=op.f('pk_login_intentos')),
    )
    op.create_index(op.f('ix_login_intentos_ventana_desde'), 'login_intentos', ['ventana_desde'], unique=False)
    op.create_table(
        'login_cuentas',
        sa.Column('email_key', sa.String(length=64), nullable=False),
        sa.Column('intentos', sa.Integer(), nullable=False),
        sa.Column('ventana_desde', sa.DateTime(timezone=True), nullable=False),
        sa.Column('siguiente_intento', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('email_key', name=op.f('pk_login_cuentas')),
    )
    op.create_index(op.f('ix_login_cuentas_ventana_desde'), 'login_cuentas', ['ventana_desde'], unique=False)
    op.create_table(
        'limites_contador',
        sa.Column('clave', sa.String(length=255), nullable=False),
        sa.Column('cuenta', sa.Integer(), nullable=False),
        sa.Column('expira', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('clave', name=op.f('pk_limites_contador')),
    )
    op.create_index(op.f('ix_limites_contador_expira'), 'limites_contador', ['expira'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_limites_contador_expira'), table_name='limites_contador')
    op.drop_table('limites_contador')
    op.drop_index(op.f('ix_login_cuentas_ventana_desde'), table_name='login_cuentas')
    op.drop_table('login_cuentas')
    op.drop_index(op.f('ix_login_intentos_ventana_desde'), table_name='login_intentos')
    op.drop_table('login_intentos')
    op.drop_index('ix_sesiones_usuario_activas', table_name='sesiones', postgresql_where='revoked_at IS NULL')
    op.drop_table('sesiones')
