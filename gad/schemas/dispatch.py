"""Dispatch, statistics and cache schemas."""

from typing import Any, Self

from pydantic import BaseModel, Field, model_validator

from gad.schemas.common import InModel, Lat, Lng, OptionalText, OutModel, QueryModel, check_location, schema_config
from gad.schemas.efectivos import EfectivoOut
from gad.schemas.tareas import TareaOut
from gad.vocab import TipoTarea


class CercanosQuery(QueryModel):
    lat: Lat
    lng: Lng
    radio_m: float = Field(5000, gt=0, le=100_000, allow_inf_nan=False)
    limit: int = Field(5, ge=1, le=100)
    solo_disponibles: bool = True
    incluir_antiguas: bool = Field(False, description="Include positions older than POSICION_MAX_EDAD_S")


class CercanoOut(OutModel):
    efectivo: EfectivoOut
    distancia_m: float
    posicion_edad_s: float | None


class EmergenciaIn(InModel):
    lat: Lat | None = Field(
        None,
        description="With lng, where help is needed. Only an efectivo's SOS from a phone without a position may omit both (anyone "
        "else: 422): it is placed at their last known position (said, with its age, in the tarea's ubicacion_descripcion) and "
        "dispatched from there when younger than POSICION_MAX_EDAD_S; older, or with none known, nobody is sent and "
        "motivo_sin_asignar says why (the supervisors are told as for any emergency)",
    )
    lng: Lng | None = None
    descripcion: OptionalText = Field(None, max_length=5000)
    tipo: TipoTarea = TipoTarea.EMERGENCIA
    prioridad: int = Field(5, ge=1, le=5)
    efectivos: int = Field(1, ge=1, le=20, description="How many efectivos to send")

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        check_location(self.lat, self.lng, "lat", "lng")
        return self


class AsignadoDistancia(BaseModel):
    model_config = schema_config()

    efectivo_id: int
    distancia_m: float


class EmergenciaOut(BaseModel):
    model_config = schema_config()

    tarea: TareaOut
    asignados: list[AsignadoDistancia]
    sin_asignar: bool = Field(description="True when nobody was available: the emergency still exists and needs a dispatcher")
    motivo_sin_asignar: str | None = Field(None, description="Why nobody was assigned, in Spanish (e.g. no recent positions)")


class StatsQuery(QueryModel):
    days: int = Field(30, ge=1, le=366)


class UserStatsOut(BaseModel):
    model_config = schema_config()

    usuario_id: int
    dias: int
    totales_por_estado: dict[str, int]
    total: int
    duracion_media_horas: float | None
    finalizadas_por_dia: list[dict[str, Any]]
    productividad_diaria: float


class ResumenOut(BaseModel):
    model_config = schema_config()

    tareas_por_estado: dict[str, int]
    efectivos_por_disponibilidad: dict[str, int]
    emergencias_activas: int
    emergencias_sin_asignar: int
    generado_en: str


class CacheStatsOut(BaseModel):
    model_config = schema_config()

    backend: str
    hits: int
    misses: int
    errors: int
