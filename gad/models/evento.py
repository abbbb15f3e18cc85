"""The append-only event log: one row per committed change, ids gapless and in commit order."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from gad.models.base import Base, utcnow


class Evento(Base):
    __tablename__ = "eventos"

    # Assigned by gad.realtime.events under a transaction-level lock, never by a sequence (sequences leave gaps).
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_type: Mapped[str] = mapped_column(String(50), index=True)
    topic: Mapped[str] = mapped_column(String(30))
    entity_type: Mapped[str] = mapped_column(String(30))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_id: Mapped[int | None]
    request_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Tamper evidence (gad.realtime.chain): this event's hash and the previous event's.
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<Evento {self.id} {self.event_type} {self.entity_type}:{self.entity_id}>"


class EventoContador(Base):
    """The single row holding the last event id handed out (see gad.realtime.events for why not a sequence)."""

    __tablename__ = "eventos_contador"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default="0" * 64, server_default="0" * 64)

    def __repr__(self) -> str:
        return f"<EventoContador {self.last_id}>"


class AuditoriaAncla(Base):
    """Where the hash chain restarts after a documented prune: the last pruned id and its hash."""

    __tablename__ = "auditoria_anclas"

    id: Mapped[int] = mapped_column(primary_key=True)
    pruned_up_to_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    pruned_count: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # gad.realtime.chain.anchor_mac under AUDIT_KEY: an anchor written with the database's credentials alone does not verify.
    mac: Mapped[str] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<AuditoriaAncla up_to={self.pruned_up_to_id}>"


class SecurityTally(Base):
    """Repetitions of one security event kind from one source in the open window (gad.realtime.tallies)."""

    __tablename__ = "security_tallies"

    kind: Mapped[str] = mapped_column(String(50), primary_key=True)
    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    actor_id: Mapped[int | None]
    count: Mapped[int] = mapped_column(BigInteger)
    samples: Mapped[list[str]] = mapped_column(JSONB)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime] = mapped_column(index=True)
    last_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<SecurityTally {self.kind} {self.source} x{self.count}>"
