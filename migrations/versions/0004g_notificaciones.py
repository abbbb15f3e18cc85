"""notificaciones: the notification ledger, broadcast alerts and per-channel delivery records.

Reviewed by hand: three new tables, nothing existing changes. The partial index on notificaciones
(escalar_en) holds only notifications still waiting for an answer, so every process's deadline sweep
reads a handful of rows however long the ledger grows. Downgrade drops the three tables (their
indexes go with them).

Revision ID: 0004g
Revises: 0004e
Create Date: 2026-11-29 23:38:24.993275

"""

import sqlalchemy as sa
from alembic import op


revision = "0004g"
down_revision = "0004e"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "alertas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tipo", sa.String(length=20), nullable=False),
        sa.Column("texto", sa.Text(), nullable=False),
        sa.Column("prioridad", sa.SmallInteger(), nullable=False),
        sa.Column("destino", sa.String(length=10), nullable=False),
        sa.Column("unidad", sa.String(length=100), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("creado_por_usuario_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cerrada_en", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cerrada_por_usuario_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("(destino = 'unidad') = (unidad IS NOT NULL)", name=op.f("ck_alertas_unidad_con_destino")),
        sa.CheckConstraint("destino IN ('todos', 'unidad', 'usuarios')", name=op.f("ck_alertas_destino_valido")),
        sa.CheckConstraint("tipo IN ('codigo_rojo', 'evacuacion', 'refuerzos', 'aviso')", name=op.f("ck_alertas_tipo_valido")),
        sa.CheckConstraint("prioridad BETWEEN 1 AND 5", name=op.f("ck_alertas_prioridad_rango")),
        sa.ForeignKeyConstraint(["cerrada_por_usuario_id"], ["usuarios.id"], name=op.f("fk_alertas_cerrada_por_usuario_id_usuarios")),
        sa.ForeignKeyConstraint(["creado_por_usuario_id"], ["usuarios.id"], name=op.f("fk_alertas_creado_por_usuario_id_usuarios")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alertas")),
    )
    op.create_table(
        "notificaciones",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("usuario_id", sa.Integer(), nullable=False),
        sa.Column("causa", sa.String(length=20), nullable=False),
        sa.Column("titulo", sa.String(length=200), nullable=False),
        sa.Column("texto", sa.Text(), nullable=False),
        sa.Column("prioridad", sa.SmallInteger(), nullable=False),
        sa.Column("requiere_respuesta", sa.Boolean(), nullable=False),
        sa.Column("tarea_id", sa.Integer(), nullable=True),
        sa.Column("asignacion_id", sa.Integer(), nullable=True),
        sa.Column("efectivo_id", sa.Integer(), nullable=True),
        sa.Column("alerta_id", sa.Integer(), nullable=True),
        sa.Column("origen_id", sa.BigInteger(), nullable=True),
        sa.Column("creado_por_usuario_id", sa.Integer(), nullable=True),
        sa.Column("creada_en", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entregada_en", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leida_en", sa.DateTime(timezone=True), nullable=True),
        sa.Column("respuesta", sa.String(length=10), nullable=True),
        sa.Column("motivo", sa.String(length=500), nullable=True),
        sa.Column("respondida_en", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalar_en", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalada_en", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reenvios", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("causa IN ('asignacion', 'emergencia', 'alerta', 'escalacion', 'rechazo')", name=op.f("ck_notificaciones_causa_valida")),
        sa.CheckConstraint("respuesta IS NULL OR respuesta IN ('acepto', 'no_puedo')", name=op.f("ck_notificaciones_respuesta_valida")),
        sa.CheckConstraint("(respuesta IS NULL) = (respondida_en IS NULL)", name=op.f("ck_notificaciones_respuesta_con_hora")),
        sa.CheckConstraint("prioridad BETWEEN 1 AND 5", name=op.f("ck_notificaciones_prioridad_rango")),
        sa.ForeignKeyConstraint(["alerta_id"], ["alertas.id"], name=op.f("fk_notificaciones_alerta_id_alertas")),
        sa.ForeignKeyConstraint(["asignacion_id"], ["asignaciones.id"], name=op.f("fk_notificaciones_asignacion_id_asignaciones")),
        sa.ForeignKeyConstraint(["creado_por_usuario_id"], ["usuarios.id"], name=op.f("fk_notificaciones_creado_por_usuario_id_usuarios")),
        sa.ForeignKeyConstraint(["efectivo_id"], ["efectivos.id"], name=op.f("fk_notificaciones_efectivo_id_efectivos")),
        sa.ForeignKeyConstraint(["origen_id"], ["notificaciones.id"], name=op.f("fk_notificaciones_origen_id_notificaciones")),
        sa.ForeignKeyConstraint(["tarea_id"], ["tareas.id"], name=op.f("fk_notificaciones_tarea_id_tareas")),
        sa.ForeignKeyConstraint(["usuario_id"], ["usuarios.id"], name=op.f("fk_notificaciones_usuario_id_usuarios")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notificaciones")),
    )
    with op.batch_alter_table("notificaciones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notificaciones_alerta_id"), ["alerta_id"], unique=False)
        batch_op.create_index(
            "ix_notificaciones_pendientes_de_escalar",
            ["escalar_en"],
            unique=False,
            postgresql_where=sa.text("escalar_en IS NOT NULL AND escalada_en IS NULL AND respuesta IS NULL"),
        )
        batch_op.create_index(batch_op.f("ix_notificaciones_tarea_id"), ["tarea_id"], unique=False)
        batch_op.create_index("ix_notificaciones_usuario_id_id", ["usuario_id", "id"], unique=False)

    op.create_table(
        "notificacion_entregas",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("notificacion_id", sa.BigInteger(), nullable=False),
        sa.Column("canal", sa.String(length=20), nullable=False),
        sa.Column("estado", sa.String(length=10), nullable=False),
        sa.Column("intentos", sa.Integer(), nullable=False),
        sa.Column("ultimo_error", sa.String(length=500), nullable=True),
        sa.Column("proximo_intento_en", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enviada_en", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("estado IN ('pendiente', 'enviada', 'fallida')", name=op.f("ck_notificacion_entregas_estado_valido")),
        sa.ForeignKeyConstraint(
            ["notificacion_id"], ["notificaciones.id"], name=op.f("fk_notificacion_entregas_notificacion_id_notificaciones"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notificacion_entregas")),
        sa.UniqueConstraint("notificacion_id", "canal", name="uq_notificacion_entregas_notificacion_canal"),
    )
    with op.batch_alter_table("notificacion_entregas", schema=None) as batch_op:
        batch_op.create_index("ix_notificacion_entregas_pendientes", ["proximo_intento_en"], unique=False, postgresql_where=sa.text("estado = 'pendiente'"))


def downgrade():
    op.drop_table("notificacion_entregas")
    op.drop_table("notificaciones")
    op.drop_table("alertas")
