"""Security state kept in PostgreSQL so every worker and machine shares it: browser sessions and login throttles."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gad.models.base import Base, utcnow


class Sesion(Base):
    """One browser session: the cookie carries a random secret, this row (found by its sha256) decides.

    A row is usable while not revoked, before ``expires_at`` (absolute lifetime) and within the idle
    timeout of ``last_seen_at``; logout sets ``revoked_at``, which every worker sees on the next request.
    """

    __tablename__ = "sesiones"
    __table_args__ = (Index("ix_sesiones_usuario_activas", "usuario_id", postgresql_where="revoked_at IS NULL"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # sha256 of the cookie's secret: a read of this table does not hand out usable sessions.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    usuario_id: Mapped[int] = mapped_column(ForeignKey("usuarios.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    client: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(200))

    def __repr__(self) -> str:
        return f"<Sesion {self.id} usuario={self.usuario_id} revoked={self.revoked_at is not None}>"


class LoginIntento(Base):
    """Login attempts for one e-mail from one client address (the unit a lockout applies to).

    ``email_key`` is the sha256 of the normalised e-mail whether or not such a usuario exists, so
    known and unknown accounts are throttled alike. ``ultimo_exito`` marks an address the account
    logged in from: it is not slowed when the account is attacked from elsewhere.
    """

    __tablename__ = "login_intentos"

    email_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    cliente: Mapped[str] = mapped_column(String(64), primary_key=True)
    intentos: Mapped[int] = mapped_column(Integer, default=0)
    ventana_desde: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ultimo_exito: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<LoginIntento {self.email_key[:8]} {self.cliente} intentos={self.intentos}>"


class LoginCuenta(Base):
    """Attempts on one e-mail from addresses it never logged in from, summed over all of them."""

    __tablename__ = "login_cuentas"

    email_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    intentos: Mapped[int] = mapped_column(Integer, default=0)
    ventana_desde: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # While the account is under attack, the next moment an unknown address may try again.
    siguiente_intento: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<LoginCuenta {self.email_key[:8]} intentos={self.intentos}>"


class LimiteContador(Base):
    """A fixed-window rate-limit counter (Flask-Limiter's storage when Redis is not configured)."""

    __tablename__ = "limites_contador"

    clave: Mapped[str] = mapped_column(String(255), primary_key=True)
    cuenta: Mapped[int] = mapped_column(Integer, default=0)
    expira: Mapped[datetime] = mapped_column(index=True)

    def __repr__(self) -> str:
        return f"<LimiteContador {self.clave} {self.cuenta}>"
