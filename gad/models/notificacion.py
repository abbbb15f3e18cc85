"""Notifications (the ledger of who was told what, and how they answered), broadcast alerts, per-channel deliveries."""

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from gad.models.base import Base, utcnow
from gad.vocab import CausaNotificacion, DestinoAlerta, TipoAlerta, sql_in


class Alerta(Base):
    """A broadcast by a supervisor to everyone, a unidad or chosen usuarios; each recipient gets a Notificacion."""

    __tablename__ = "alertas"
    __table_args__ = (
        CheckConstraint(f"tipo IN ({sql_in(TipoAlerta)})", name="tipo_valido"),
        CheckConstraint(f"destino IN ({sql_in(DestinoAlerta)})", name="destino_valido"),
        CheckConstraint("(destino = 'unidad') = (unidad IS NOT NULL)", name="unidad_con_destino"),
        CheckConstraint("prioridad BETWEEN 1 AND 5", name="prioridad_rango"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tipo: Mapped[str] = mapped_column(String(20))
    texto: Mapped[str] = mapped_column(Text)
    prioridad: Mapped[int] = mapped_column(SmallInteger, default=4)
    destino: Mapped[str] = mapped_column(String(10))
    unidad: Mapped[str | None] = mapped_column(String(100))
    total: Mapped[int] = mapped_column(default=0)
    creado_por_usuario_id: Mapped[int] = mapped_column(ForeignKey("usuarios.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cerrada_en: Mapped[datetime | None]
    cerrada_por_usuario_id: Mapped[int | None] = mapped_column(ForeignKey("usuarios.id"))

    def __repr__(self) -> str:
        return f"<Alerta {self.id} {self.tipo} {self.destino} total={self.total}>"


class Notificacion(Base):
    """One notification to one usuario, written in the same transaction as its cause.

    Life: ``creada_en`` → ``entregada_en`` (a device of the recipient reported it) → ``respondida_en`` with
    ``respuesta`` acepto / no_puedo (+ ``motivo``) and ``leida_en``. ``escalar_en`` is the deadline of a
    notification that asks for an answer; the sweep sets ``escalada_en`` exactly once (or clears
    ``escalar_en`` when the answer is no longer needed).
    """

    __tablename__ = "notificaciones"
    __table_args__ = (
        CheckConstraint(f"causa IN ({sql_in(CausaNotificacion)})", name="causa_valida"),
        CheckConstraint("respuesta IS NULL OR respuesta IN ('acepto', 'no_puedo')", name="respuesta_valida"),
        CheckConstraint("(respuesta IS NULL) = (respondida_en IS NULL)", name="respuesta_con_hora"),
        CheckConstraint("prioridad BETWEEN 1 AND 5", name="prioridad_rango"),
        # The sweep reads only what is due: a small partial index instead of a scan of the whole ledger.
        Index(
            "ix_notificaciones_pendientes_de_escalar",
            "escalar_en",
            postgresql_where=text("escalar_en IS NOT NULL AND escalada_en IS NULL AND respuesta IS NULL"),
        ),
        Index("ix_notificaciones_usuario_id_id", "usuario_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    usuario_id: Mapped[int] = mapped_column(ForeignKey("usuarios.id"))
    causa: Mapped[str] = mapped_column(String(20))
    titulo: Mapped[str] = mapped_column(String(200))
    texto: Mapped[str] = mapped_column(Text)
    prioridad: Mapped[int] = mapped_column(SmallInteger, default=3)
    requiere_respuesta: Mapped[bool] = mapped_column(default=False)
    # What it is about (any of them may be empty): the tarea, the assignment an answer may release, the alert,
    # and for an escalation or a "no puedo" notice, the notification it is about.
    tarea_id: Mapped[int | None] = mapped_column(ForeignKey("tareas.id"), index=True)
    asignacion_id: Mapped[int | None] = mapped_column(ForeignKey("asignaciones.id"))
    efectivo_id: Mapped[int | None] = mapped_column(ForeignKey("efectivos.id"))
    alerta_id: Mapped[int | None] = mapped_column(ForeignKey("alertas.id"), index=True)
    origen_id: Mapped[int | None] = mapped_column(ForeignKey("notificaciones.id"))
    creado_por_usuario_id: Mapped[int | None] = mapped_column(ForeignKey("usuarios.id"))
    creada_en: Mapped[datetime] = mapped_column(default=utcnow)
    entregada_en: Mapped[datetime | None]
    leida_en: Mapped[datetime | None]
    respuesta: Mapped[str | None] = mapped_column(String(10))
    motivo: Mapped[str | None] = mapped_column(String(500))
    respondida_en: Mapped[datetime | None]
    escalar_en: Mapped[datetime | None]
    escalada_en: Mapped[datetime | None]
    reenvios: Mapped[int] = mapped_column(default=0, server_default="0")

    def __repr__(self) -> str:
        return f"<Notificacion {self.id} {self.causa} usuario={self.usuario_id} respuesta={self.respuesta}>"


class NotificacionEntrega(Base):
    """One channel's attempt(s) at one notification: the in-app channel and any outbound one (Telegram, Web Push)."""

    __tablename__ = "notificacion_entregas"
    __table_args__ = (
        UniqueConstraint("notificacion_id", "canal", name="uq_notificacion_entregas_notificacion_canal"),
        CheckConstraint("estado IN ('pendiente', 'enviada', 'fallida')", name="estado_valido"),
        Index("ix_notificacion_entregas_pendientes", "proximo_intento_en", postgresql_where=text("estado = 'pendiente'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    notificacion_id: Mapped[int] = mapped_column(ForeignKey("notificaciones.id", ondelete="CASCADE"))
    canal: Mapped[str] = mapped_column(String(20))
    estado: Mapped[str] = mapped_column(String(10), default="pendiente")
    intentos: Mapped[int] = mapped_column(default=0)
    ultimo_error: Mapped[str | None] = mapped_column(String(500))
    proximo_intento_en: Mapped[datetime | None]
    enviada_en: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<NotificacionEntrega {self.notificacion_id} {self.canal} {self.estado}>"
