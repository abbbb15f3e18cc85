"""Provenance of imported rows: which row of which old system each GAD row came from."""

from datetime import datetime

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from gad.models.base import Base, utcnow


class Procedencia(Base):
    """One imported row: (sistema, entidad, old_id) -> new_id, with a hash of the source row as read.

    The hash is how a re-run tells an unchanged source row (skipped) from one edited since (reported, never
    overwritten); the primary key is what makes a re-run or a resumed run import nothing twice.
    """

    __tablename__ = "procedencias"
    __table_args__ = (Index("ix_procedencias_entidad_new_id", "entidad", "new_id"),)

    sistema: Mapped[str] = mapped_column(String(30), primary_key=True)
    entidad: Mapped[str] = mapped_column(String(30), primary_key=True)
    old_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    new_id: Mapped[int] = mapped_column(BigInteger)
    source_hash: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<Procedencia {self.sistema}:{self.entidad}:{self.old_id} -> {self.new_id}>"
