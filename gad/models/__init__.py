"""Every model, imported here so Flask-Migrate sees the whole schema."""

from gad.models.base import Base, utcnow
from gad.models.efectivo import Efectivo
from gad.models.evento import AuditoriaAncla, Evento, EventoContador
from gad.models.idempotencia import IdempotencyKey
from gad.models.procedencia import Procedencia
from gad.models.tarea import Asignacion, HistorialEstado, Tarea
from gad.models.usuario import TokenRevocado, Usuario

__all__ = [
    "Asignacion",
    "AuditoriaAncla",
    "Base",
    "Efectivo",
    "Evento",
    "EventoContador",
    "HistorialEstado",
    "IdempotencyKey",
    "Procedencia",
    "Tarea",
    "TokenRevocado",
    "Usuario",
    "utcnow",
]
