"""Turnos (shifts) and licencias (leave) of efectivos: time ranges the database keeps from overlapping."""

import uuid as uuid_lib
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Uuid
from sqlalchemy.dialects.postgresql import TSTZRANGE, ExcludeConstraint, Range
from sqlalchemy.orm import Mapped, mapped_column

from gad.models.base import Base, Timestamps, Versioned
from gad.vocab import TipoLicencia, TipoTurno, sql_in

# A range must be finite and non-empty: an open-ended shift would book an efectivo for ever.
_FINITE = "NOT isempty(periodo) AND NOT lower_inf(periodo) AND NOT upper_inf(periodo)"


class Turno(Timestamps, Versioned, Base):
    __tablename__ = "turnos"
    __table_args__ = (
        # The guarantee of issue 17: one efectivo never holds two overlapping shifts, whatever races.
        ExcludeConstraint(("efectivo_id", "="), ("periodo", "&&"), name="ex_turnos_sin_solape", using="gist"),
        CheckConstraint(_FINITE, name="periodo_finito"),
        CheckConstraint(f"tipo IN ({sql_in(TipoTurno)})", name="tipo_valido"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    efectivo_id: Mapped[int] = mapped_column(ForeignKey("efectivos.id"))
    unidad: Mapped[str | None] = mapped_column(String(100), index=True)
    tipo: Mapped[str] = mapped_column(String(20), default=TipoTurno.SERVICIO.value)
    periodo: Mapped[Range[datetime]] = mapped_column(TSTZRANGE)
    # Shifts created together from one repeating pattern share a serie (to list or undo the rota).
    serie: Mapped[uuid_lib.UUID | None] = mapped_column(Uuid, index=True)
    notas: Mapped[str | None] = mapped_column(String(500))
    creado_por_usuario_id: Mapped[int | None] = mapped_column(ForeignKey("usuarios.id"))

    def __repr__(self) -> str:
        return f"<Turno {self.id} efectivo={self.efectivo_id} {self.tipo} {self.periodo}>"


class Licencia(Timestamps, Versioned, Base):
    __tablename__ = "licencias"
    __table_args__ = (
        ExcludeConstraint(("efectivo_id", "="), ("periodo", "&&"), name="ex_licencias_sin_solape", using="gist"),
        CheckConstraint(_FINITE, name="periodo_finito"),
        CheckConstraint(f"tipo IN ({sql_in(TipoLicencia)})", name="tipo_valido"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    efectivo_id: Mapped[int] = mapped_column(ForeignKey("efectivos.id"))
    tipo: Mapped[str] = mapped_column(String(20))
    periodo: Mapped[Range[datetime]] = mapped_column(TSTZRANGE)
    motivo: Mapped[str | None] = mapped_column(String(500))
    creado_por_usuario_id: Mapped[int | None] = mapped_column(ForeignKey("usuarios.id"))

    def __repr__(self) -> str:
        return f"<Licencia {self.id} efectivo={self.efectivo_id} {self.tipo} {self.periodo}>"
