"""Efectivos: field personnel, their availability and last known position."""

import uuid as uuid_lib
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ColumnElement, Float, ForeignKey, String, Uuid, column, exists, func, table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, column_property, mapped_column

from gad.models.base import Base, Timestamps, Versioned, utcnow
from gad.vocab import Disponibilidad, sql_in

# Lightweight table clauses: this module must not import gad.models.turno (which refers back to efectivos).
_turnos = table("turnos", column("efectivo_id"), column("periodo"))
_licencias = table("licencias", column("efectivo_id"), column("periodo"))


def en_licencia_at(efectivo_id: Any, at: Any) -> ColumnElement[bool]:
    """SQL: a licencia of the efectivo covers ``at`` (leave is not negotiable: nobody dispatches them then)."""
    return exists().where(_licencias.c.efectivo_id == efectivo_id, _licencias.c.periodo.op("@>")(at))


def en_servicio_at(efectivo_id: Any, at: Any) -> ColumnElement[bool]:
    """SQL: the efectivo is inside a turno at ``at`` and not on licencia (issue 17's definition of on duty)."""
    in_shift = exists().where(_turnos.c.efectivo_id == efectivo_id, _turnos.c.periodo.op("@>")(at))
    return in_shift & ~en_licencia_at(efectivo_id, at)


class Efectivo(Timestamps, Versioned, Base):
    __tablename__ = "efectivos"
    __table_args__ = (
        CheckConstraint(f"estado_disponibilidad IN ({sql_in(Disponibilidad)})", name="estado_valido"),
        CheckConstraint("char_length(codigo_interno) >= 3", name="codigo_longitud"),
        CheckConstraint("(lat IS NULL) = (lon IS NULL)", name="posicion_completa"),
        CheckConstraint("lat IS NULL OR (lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180)", name="posicion_rango"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid_lib.UUID] = mapped_column(Uuid, default=uuid_lib.uuid4, unique=True)
    usuario_id: Mapped[int | None] = mapped_column(ForeignKey("usuarios.id"), unique=True)
    codigo_interno: Mapped[str] = mapped_column(String(30), unique=True)
    nombre: Mapped[str] = mapped_column(String(200))
    rango: Mapped[str | None] = mapped_column(String(50))
    unidad: Mapped[str | None] = mapped_column(String(100), index=True)
    especialidad: Mapped[str | None] = mapped_column(String(100))
    estado_disponibilidad: Mapped[str] = mapped_column(String(20), default=Disponibilidad.DISPONIBLE.value, index=True)
    estado_cambiado_en: Mapped[datetime] = mapped_column(default=utcnow)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    posicion_en: Mapped[datetime | None]
    activo: Mapped[bool] = mapped_column(default=True, server_default="true")
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Computed in the same SELECT (two index probes on the turnos/licencias exclusion indexes).
    en_servicio: Mapped[bool] = column_property(en_servicio_at(id, func.now()))

    def __repr__(self) -> str:
        return f"<Efectivo {self.id} {self.codigo_interno} {self.estado_disponibilidad}>"
