"""Every model, imported here so Flask-Migrate sees the whole schema."""

from gad.models.base import Base, utcnow
from gad.models.efectivo import Efectivo
from gad.models.evento import AuditoriaAncla, Evento, EventoContador, SecurityTally
from gad.models.idempotencia import IdempotencyKey
from gad.models.notificacion import Alerta, Notificacion, NotificacionEntrega
from gad.models.procedencia import Procedencia
from gad.models.seguridad import LimiteContador, LoginCuenta, LoginIntento, Sesion
from gad.models.tarea import Asignacion, HistorialEstado, Tarea
from gad.models.turno import Licencia, Turno
from gad.models.usuario import TokenRevocado, Usuario

__all__ = [
    "Alerta",
    "Asignacion",
    "AuditoriaAncla",
    "Base",
    "Efectivo",
    "Evento",
    "EventoContador",
    "HistorialEstado",
    "IdempotencyKey",
    "Licencia",
    "LimiteContador",
    "LoginCuenta",
    "LoginIntento",
    "Notificacion",
    "NotificacionEntrega",
    "Procedencia",
    "SecurityTally",
    "Sesion",
    "Tarea",
    "TokenRevocado",
    "Turno",
    "Usuario",
    "utcnow",
]
