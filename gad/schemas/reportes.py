"""Report and audit-export query schemas."""

from typing import Annotated, Any, Literal

from pydantic import Field

from gad.schemas.common import DateWindow, OutModel, QueryModel, Unidad, schema_config
from gad.vocab import TipoTarea


class ReportQuery(QueryModel):
    desde: str | None = Field(None, max_length=40, description="YYYY-MM-DD (local day) or an ISO 8601 instant; default hasta - 30 days")
    hasta: str | None = Field(None, max_length=40, description="YYYY-MM-DD (that whole local day included) or an instant; default now")
    tipo: list[TipoTarea] | None = None
    prioridad: list[Annotated[int, Field(ge=1, le=5)]] | None = Field(None, max_length=5)
    unidad: Unidad = None
    agrupar: Literal["tipo", "prioridad"] = "tipo"
    formato: Literal["json", "csv"] = "json"


class AuditExportQuery(DateWindow):
    """The window of the event log an export covers (both ends optional)."""


class ReportOut(OutModel):
    """Every report echoes its filter; the rest differs per report (documented in the README)."""

    model_config = schema_config(extra="allow")
    filtro: dict[str, Any]
