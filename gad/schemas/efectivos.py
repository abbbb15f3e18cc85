"""Efectivo schemas."""

import uuid
from datetime import datetime

from pydantic import Field

from gad.schemas.common import InModel, Lat, Lng, Name, OptionalText, OutModel, PageQuery, PatchModel, RowId, Text, Unidad, UtcDatetime
from gad.vocab import Disponibilidad


class EfectivoIn(InModel):
    codigo_interno: Text = Field(min_length=3, max_length=30)
    nombre: Name = Field(min_length=2, max_length=200)
    usuario_id: RowId | None = None
    rango: OptionalText = Field(None, max_length=50)
    unidad: Unidad = None
    especialidad: OptionalText = Field(None, max_length=100)
    estado_disponibilidad: Disponibilidad = Disponibilidad.DISPONIBLE


class EfectivoPatch(PatchModel):
    nullable = frozenset({"usuario_id", "rango", "unidad", "especialidad"})

    codigo_interno: Text | None = Field(None, min_length=3, max_length=30)
    nombre: Name | None = Field(None, min_length=2, max_length=200)
    usuario_id: RowId | None = None
    rango: OptionalText = Field(None, max_length=50)
    unidad: Unidad = None
    especialidad: OptionalText = Field(None, max_length=100)


class DisponibilidadIn(InModel):
    estado: Disponibilidad
    motivo: OptionalText = Field(None, max_length=500)
    desde: Disponibilidad | None = Field(
        None,
        description="The availability the choice was made from (what the officer saw). When someone changed it "
        "meanwhile (a choice kept offline and sent later), 409 with `estado_actual`, and nothing changes. Default: "
        "no such check.",
    )


class UbicacionIn(InModel):
    lat: Lat
    lng: Lng
    registrado_en: UtcDatetime | None = Field(
        None,
        description="When the device took the fix (a fix kept offline and sent later); not in the future. Default: now. "
        "A fix older than the one already recorded is accepted but does not replace it.",
    )


class EfectivoOut(OutModel):
    id: int
    uuid: uuid.UUID
    usuario_id: int | None
    codigo_interno: str
    nombre: str
    rango: str | None
    unidad: str | None
    especialidad: str | None
    estado_disponibilidad: Disponibilidad
    estado_cambiado_en: datetime
    lat: float | None
    lng: float | None = Field(None, validation_alias="lon")
    posicion_en: datetime | None
    activo: bool
    en_servicio: bool = Field(description="inside a turno now and not on licencia")
    version: int
    created_at: datetime
    updated_at: datetime


class EfectivoQuery(PageQuery):
    estado_disponibilidad: list[Disponibilidad] | None = None
    unidad: Unidad = None
    especialidad: str | None = Field(None, max_length=100)
    activo: bool | None = True
    en_servicio: bool | None = Field(None, description="only efectivos on duty now (true) or off duty (false)")
    q: str | None = Field(
        None, max_length=100, description="Text found, as typed, in any case and with or without accents, in nombre, codigo_interno, unidad or rango"
    )
