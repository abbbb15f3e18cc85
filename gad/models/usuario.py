"""Usuarios (people who log in) and revoked access tokens."""

import uuid as uuid_lib
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, SmallInteger, String, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from gad.models.base import Base, Timestamps, Versioned

# Kept in ``extra`` (JSONB): a flag only the browser's first-login flow reads, not worth a schema change.
DEBE_CAMBIAR_CLAVE = "debe_cambiar_clave"


class Usuario(Timestamps, Versioned, Base):
    __tablename__ = "usuarios"
    __table_args__ = (
        CheckConstraint("nivel BETWEEN 1 AND 3", name="nivel_valido"),
        CheckConstraint("char_length(dni) >= 5", name="dni_longitud"),
        CheckConstraint("char_length(apellido) >= 2", name="apellido_longitud"),
        # E-mail identity is case-insensitive: two rows may not differ only in case.
        Index("uq_usuarios_email_lower", func.lower(text("email")), unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid_lib.UUID] = mapped_column(Uuid, default=uuid_lib.uuid4, unique=True)
    email: Mapped[str] = mapped_column(String(254))
    dni: Mapped[str] = mapped_column(String(20), unique=True)
    nombre: Mapped[str] = mapped_column(String(100))
    apellido: Mapped[str] = mapped_column(String(100))
    telefono: Mapped[str | None] = mapped_column(String(30))
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    nivel: Mapped[int] = mapped_column(SmallInteger, default=1)
    password_hash: Mapped[str] = mapped_column(String(255))
    verificado: Mapped[bool] = mapped_column(default=False)
    activo: Mapped[bool] = mapped_column(default=True, server_default="true")
    ultimo_acceso: Mapped[datetime | None]
    intentos_fallidos: Mapped[int] = mapped_column(default=0, server_default="0")
    bloqueado_hasta: Mapped[datetime | None]
    # Bumped on password change or deactivation: every token carrying an older value is dead.
    token_version: Mapped[int] = mapped_column(default=1, server_default="1")
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    @property
    def nombre_completo(self) -> str:
        return f"{self.nombre} {self.apellido}"

    @property
    def debe_cambiar_clave(self) -> bool:
        """Set when an administrador chose the password (creation, reset); cleared when the person changes it."""
        return bool((self.extra or {}).get(DEBE_CAMBIAR_CLAVE))

    @debe_cambiar_clave.setter
    def debe_cambiar_clave(self, value: bool) -> None:
        # A new dict, so SQLAlchemy sees the JSONB column change (in-place edits are not tracked).
        extra = dict(self.extra or {})
        if value:
            extra[DEBE_CAMBIAR_CLAVE] = True
        else:
            extra.pop(DEBE_CAMBIAR_CLAVE, None)
        self.extra = extra or None

    def __repr__(self) -> str:
        return f"<Usuario {self.id} {self.email} nivel={self.nivel}>"


class TokenRevocado(Base):
    """A single logged-out token; rows past ``expires_at`` are useless and can be pruned."""

    __tablename__ = "tokens_revocados"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    usuario_id: Mapped[int] = mapped_column(ForeignKey("usuarios.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)

    def __repr__(self) -> str:
        return f"<TokenRevocado {self.jti} usuario={self.usuario_id}>"
