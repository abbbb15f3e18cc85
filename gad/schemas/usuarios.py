"""Usuario schemas; no output shape has a password field."""

import uuid
from datetime import datetime

from pydantic import Field

from gad.schemas.common import Dni, Email, InModel, Name, OptionalText, OutModel, PageQuery, PatchModel


class UsuarioIn(InModel):
    email: Email
    password: str = Field(min_length=1, max_length=1024)
    dni: Dni = Field(min_length=5, max_length=20)
    nombre: Name = Field(min_length=1, max_length=100)
    apellido: Name = Field(min_length=2, max_length=100)
    telefono: OptionalText = Field(None, max_length=30)
    telegram_id: int | None = Field(None, ge=1, le=2**63 - 1)
    nivel: int = Field(1, ge=1, le=3)
    verificado: bool = False


class UsuarioPatch(PatchModel):
    nullable = frozenset({"telefono", "telegram_id"})

    email: Email | None = None
    dni: Dni | None = Field(None, min_length=5, max_length=20)
    nombre: Name | None = Field(None, min_length=1, max_length=100)
    apellido: Name | None = Field(None, min_length=2, max_length=100)
    telefono: OptionalText = Field(None, max_length=30)
    telegram_id: int | None = Field(None, ge=1, le=2**63 - 1)
    nivel: int | None = Field(None, ge=1, le=3)
    verificado: bool | None = None
    activo: bool | None = None
    password: str | None = Field(None, min_length=1, max_length=1024)
    current_password: str | None = Field(None, max_length=1024)


class UsuarioOut(OutModel):
    id: int
    uuid: uuid.UUID
    email: str
    nombre: str
    apellido: str
    # Personal data: left out of the response for callers who may not see it (gad/policy.py).
    dni: str | None = Field(None, description="administrador and the usuario themself only")
    telefono: str | None = Field(None, description="also supervisors")
    telegram_id: int | None = Field(None, description="administrador and the usuario themself only")
    nivel: int
    verificado: bool
    activo: bool
    ultimo_acceso: datetime | None
    debe_cambiar_clave: bool = Field(False, description="An administrador set the password; the person must change it (the browser asks at login)")
    created_at: datetime
    version: int


class UsuarioQuery(PageQuery):
    nivel: int | None = Field(None, ge=1, le=3)
    activo: bool | None = None
    con_efectivo: bool | None = Field(
        None, description="true: only usuarios linked to an efectivo; false: only those not linked (whom a new efectivo may link)"
    )
    q: str | None = Field(
        None,
        max_length=100,
        description="Text found, as typed, in any case and with or without accents, in nombre, apellido, e-mail (and DNI, for administradores)",
    )
    telegram_id: int | None = Field(None, ge=1, le=2**63 - 1, description="The usuario with this Telegram id (administradores only; 403 otherwise)")
