"""Turno, licencia and planning schemas."""

import uuid
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import AfterValidator, Field, model_validator

from gad.schemas.common import DateWindow, InModel, OptionalText, OutModel, PageQuery, PatchModel, QueryModel, RowId, Unidad, UtcDatetime, rule_broken
from gad.vocab import TIEMPO_MAX, TIEMPO_MIN, TipoLicencia, TipoTurno


class RepeticionIn(InModel):
    """Repeat the shift until ``hasta``: every ``cada_horas`` (48 = 12×36) or on ``dias_semana`` (0 = lunes)."""

    hasta: UtcDatetime
    cada_horas: int | None = Field(None, ge=1, le=24 * 28)
    dias_semana: list[int] | None = Field(None, min_length=1, max_length=7)

    @model_validator(mode="after")
    def _one_rule(self) -> Self:
        if (self.cada_horas is None) == (self.dias_semana is None):
            raise rule_broken(
                "give exactly one of cada_horas or dias_semana",
                "Indique cada_horas o dias_semana, uno solo.",
                "cada_horas",
            )
        if self.dias_semana is not None and any(d < 0 or d > 6 for d in self.dias_semana):
            raise rule_broken("dias_semana are 0 (lunes) to 6 (domingo)", "Los días van de 0 (lunes) a 6 (domingo).", "dias_semana")
        return self


class TurnoIn(InModel):
    efectivo_id: RowId
    inicio: UtcDatetime
    fin: UtcDatetime
    tipo: TipoTurno = TipoTurno.SERVICIO
    unidad: Unidad = Field(None, description="defaults to the efectivo's unidad")
    notas: OptionalText = Field(None, max_length=500)
    repetir: RepeticionIn | None = None


class TurnoCheckIn(TurnoIn):
    """A dry run: ``skip_turno`` ignores the shift being moved."""

    skip_turno: int | None = Field(None, ge=1)


class TurnoPatch(PatchModel):
    nullable = frozenset({"unidad", "notas"})

    efectivo_id: RowId | None = None
    inicio: UtcDatetime | None = None
    fin: UtcDatetime | None = None
    tipo: TipoTurno | None = None
    unidad: Unidad = None
    notas: OptionalText = Field(None, max_length=500)


class TurnoOut(OutModel):
    id: int
    efectivo_id: int
    unidad: str | None
    tipo: TipoTurno
    inicio: datetime
    fin: datetime
    serie: uuid.UUID | None
    notas: str | None
    version: int
    creado_por_usuario_id: int | None
    created_at: datetime


class TurnosCreated(OutModel):
    items: list[TurnoOut]
    total: int
    serie: uuid.UUID | None


class ChoqueOut(OutModel):
    clase: str
    id: int
    inicio: datetime
    fin: datetime
    ocurrencia: int
    codigo: str | None = None


class RangoOut(OutModel):
    inicio: datetime
    fin: datetime


class TurnoCheckOut(OutModel):
    ocurrencias: list[RangoOut]
    conflictos: list[ChoqueOut]


class AgendaQuery(PageQuery, DateWindow):  # the window is also a PostgreSQL range, which refuses it reversed
    efectivo_id: RowId | None = None
    unidad: Unidad = None


class LicenciaIn(InModel):
    efectivo_id: RowId
    tipo: TipoLicencia
    inicio: UtcDatetime
    fin: UtcDatetime
    motivo: OptionalText = Field(None, max_length=500)


class LicenciaOut(OutModel):
    id: int
    efectivo_id: int
    tipo: TipoLicencia
    inicio: datetime
    fin: datetime
    motivo: str | None
    version: int
    creado_por_usuario_id: int | None
    created_at: datetime


_PRIMER_DIA = TIEMPO_MIN.date()
_ULTIMO_DIA = (TIEMPO_MAX - timedelta(days=1)).date()


def _dia_en_ventana(value: str) -> str:
    # The days of the instants' window: the week of 9999-12-31 would end past Python's last date (a 500), and one
    # of year 1 would answer instants no other endpoint accepts.
    try:
        dia = date.fromisoformat(value)
    except ValueError:  # 2026-02-30 passes the pattern
        raise ValueError("not a calendar date") from None
    if not _PRIMER_DIA <= dia <= _ULTIMO_DIA:
        raise ValueError(f"must be a date between {_PRIMER_DIA} and {_ULTIMO_DIA}")
    return value


class PlanningQuery(QueryModel):
    unidad: Unidad = Field(None, description="omit for every unidad")
    semana: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$"), AfterValidator(_dia_en_ventana)] | None = Field(
        None, description=f"any date of the week (local), {_PRIMER_DIA} to {_ULTIMO_DIA}; default this week"
    )


class PlanningOut(OutModel):
    unidad: str | None
    zona_horaria: str
    desde: datetime
    hasta: datetime
    efectivos: list[dict[str, Any]]
    turnos: list[dict[str, Any]]
    licencias: list[dict[str, Any]]
    reservas: list[dict[str, Any]]
    unidades: list[str]
