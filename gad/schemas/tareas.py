"""Tarea, assignment and state-transition schemas."""

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from gad.schemas.common import (
    DateWindow,
    InModel,
    Lat,
    Lng,
    OptionalText,
    OutModel,
    PageQuery,
    PatchModel,
    RowId,
    Text,
    UtcDatetime,
    check_location,
    not_below,
    rule_broken,
)
from gad.vocab import CODIGO_PATTERN, PREFIJO_EMERGENCIA, EstadoTarea, TipoTarea


def _not_emergency_code(codigo: str) -> str:
    if codigo.startswith(PREFIJO_EMERGENCIA):
        raise rule_broken(
            f"codes starting with {PREFIJO_EMERGENCIA} are reserved for emergencies (POST /api/v1/tasks/emergency)",
            f"Los códigos que empiezan por {PREFIJO_EMERGENCIA} están reservados a las emergencias.",
        )
    return codigo


class TareaIn(InModel):
    codigo: Annotated[str, AfterValidator(_not_emergency_code)] = Field(
        pattern=CODIGO_PATTERN, description=f"Upper-case letters, digits, - and _, 3-20 characters; not starting with {PREFIJO_EMERGENCIA}"
    )
    titulo: Text = Field(min_length=5, max_length=200)
    descripcion: OptionalText = Field(None, max_length=5000)
    tipo: TipoTarea
    prioridad: int = Field(2, ge=1, le=5)
    inicio_programado: UtcDatetime | None = None
    fin_programado: UtcDatetime | None = None
    ubicacion_lat: Lat | None = None
    ubicacion_lng: Lng | None = None
    ubicacion_descripcion: OptionalText = Field(None, max_length=300)
    delegado_usuario_id: RowId | None = None
    notas: OptionalText = Field(None, max_length=5000)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.inicio_programado and self.fin_programado and self.fin_programado <= self.inicio_programado:
            raise rule_broken("fin_programado must be after inicio_programado", "El fin debe ser posterior al inicio.", "fin_programado")
        check_location(self.ubicacion_lat, self.ubicacion_lng, "ubicacion_lat", "ubicacion_lng")
        return self


class TareaPatch(PatchModel):
    nullable = frozenset(
        {"descripcion", "inicio_programado", "fin_programado", "ubicacion_lat", "ubicacion_lng", "ubicacion_descripcion", "delegado_usuario_id", "notas"}
    )

    @model_validator(mode="before")
    @classmethod
    def _estado_has_its_own_endpoint(cls, data: object) -> object:
        if isinstance(data, dict) and "estado" in data:
            raise rule_broken(
                "estado cannot be edited: use POST /api/v1/tasks/{id}/estado", "El estado no se edita aquí: use «Cambiar estado» de la tarea.", "estado"
            )
        return data

    titulo: Text | None = Field(None, min_length=5, max_length=200)
    descripcion: OptionalText = Field(None, max_length=5000)
    tipo: TipoTarea | None = None
    prioridad: int | None = Field(None, ge=1, le=5)
    inicio_programado: UtcDatetime | None = None
    fin_programado: UtcDatetime | None = None
    ubicacion_lat: Lat | None = None
    ubicacion_lng: Lng | None = None
    ubicacion_descripcion: OptionalText = Field(None, max_length=300)
    delegado_usuario_id: RowId | None = None
    notas: OptionalText = Field(None, max_length=5000)


class TransicionIn(InModel):
    estado: EstadoTarea
    motivo: OptionalText = Field(None, max_length=500)
    ocurrido_en: UtcDatetime | None = Field(
        None,
        description="When the change was made, for one sent late (an action a phone kept offline): the tarea's times "
        "(inicio_real, pausado_en, fin_real, cerrada_en) and its history take it. A time ahead of the server's reads as "
        "now; it is never earlier than the tarea's previous change, its first assignment or 24 hours ago. Default: now.",
    )


class AsignacionIn(InModel):
    efectivo_ids: list[RowId] = Field(min_length=1, max_length=50)


class AsignadoOut(OutModel):
    efectivo_id: int
    codigo_interno: str
    nombre: str
    asignado_en: datetime


class TareaOut(OutModel):
    id: int
    uuid: uuid.UUID
    codigo: str
    titulo: str
    descripcion: str | None
    tipo: TipoTarea
    prioridad: int
    estado: EstadoTarea
    es_emergencia: bool
    inicio_programado: datetime | None
    fin_programado: datetime | None
    inicio_real: datetime | None
    fin_real: datetime | None
    tiempo_pausado_s: int
    ubicacion_lat: float | None
    ubicacion_lng: float | None = Field(None, validation_alias="ubicacion_lon")
    ubicacion_descripcion: str | None
    delegado_usuario_id: int | None
    creado_por_usuario_id: int
    notas: str | None
    efectivos: list[AsignadoOut] = []
    version: int
    created_at: datetime
    updated_at: datetime
    cerrada_en: datetime | None = Field(description="When it became finalizada or cancelada; null while open")


class HistorialOut(OutModel):
    id: int
    tarea_id: int
    estado_anterior: EstadoTarea | None
    estado_nuevo: EstadoTarea
    usuario_id: int | None
    motivo: str | None
    created_at: datetime


class TareaQuery(PageQuery, DateWindow):
    estado: list[EstadoTarea] | None = None
    tipo: list[TipoTarea] | None = None
    prioridad_min: int | None = Field(None, ge=1, le=5)
    prioridad_max: int | None = Field(None, ge=1, le=5)
    delegado_usuario_id: RowId | None = None
    efectivo_id: RowId | None = None
    desde: UtcDatetime | None = Field(None, description="inicio_programado >= desde")
    hasta: UtcDatetime | None = Field(None, description="inicio_programado < hasta")
    q: str | None = Field(None, max_length=100, description="Text found, as typed, in any case and with or without accents, in codigo, titulo or descripcion")
    sort: Literal["inicio_programado", "-inicio_programado", "prioridad", "-prioridad", "created_at", "-created_at", "cerrada_en", "-cerrada_en"] = (
        "-created_at"
    )

    _not_below_prioridad_min = field_validator("prioridad_max")(
        not_below("prioridad_min", "must not be below prioridad_min", "«Prioridad máxima» no puede ser menor que la mínima.")
    )
