"""The domain vocabulary (estados, tipos, niveles) as the API and the database spell it; imports nothing."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Nivel(IntEnum):
    EFECTIVO = 1
    SUPERVISOR = 2
    ADMINISTRADOR = 3


class EstadoTarea(StrEnum):
    PROGRAMADA = "programada"
    EN_CURSO = "en_curso"
    PAUSADA = "pausada"
    FINALIZADA = "finalizada"
    CANCELADA = "cancelada"


class TipoTarea(StrEnum):
    PATRULLAJE = "patrullaje"
    INVESTIGACION = "investigacion"
    VIGILANCIA = "vigilancia"
    INTERVENCION = "intervencion"
    ADMINISTRATIVA = "administrativa"
    ENTRENAMIENTO = "entrenamiento"
    EMERGENCIA = "emergencia"


class Disponibilidad(StrEnum):
    DISPONIBLE = "disponible"
    EN_TAREA = "en_tarea"
    FUERA_SERVICIO = "fuera_servicio"
    NO_DISPONIBLE = "no_disponible"


# The state machine of DESIGN §3: anything not listed here is rejected with 409.
TRANSICIONES: dict[EstadoTarea, frozenset[EstadoTarea]] = {
    EstadoTarea.PROGRAMADA: frozenset({EstadoTarea.EN_CURSO, EstadoTarea.CANCELADA}),
    EstadoTarea.EN_CURSO: frozenset({EstadoTarea.PAUSADA, EstadoTarea.FINALIZADA, EstadoTarea.CANCELADA}),
    EstadoTarea.PAUSADA: frozenset({EstadoTarea.EN_CURSO, EstadoTarea.CANCELADA}),
    EstadoTarea.FINALIZADA: frozenset(),
    EstadoTarea.CANCELADA: frozenset(),
}

# An efectivo working one of these tareas is busy; finishing or cancelling releases them.
ESTADOS_ACTIVOS = frozenset({EstadoTarea.PROGRAMADA, EstadoTarea.EN_CURSO, EstadoTarea.PAUSADA})
ESTADOS_EN_MARCHA = frozenset({EstadoTarea.EN_CURSO, EstadoTarea.PAUSADA})
ESTADOS_FINALES = frozenset({EstadoTarea.FINALIZADA, EstadoTarea.CANCELADA})

CODIGO_PATTERN = r"^[A-Z0-9_-]{3,20}$"

MOTIVOS_AUTOMATICOS: dict[EstadoTarea, str] = {
    EstadoTarea.EN_CURSO: "Tarea iniciada",
    EstadoTarea.FINALIZADA: "Tarea completada",
    EstadoTarea.CANCELADA: "Tarea cancelada",
    EstadoTarea.PAUSADA: "Tarea pausada",
}
MOTIVO_POR_DEFECTO = "Cambio de estado"


def sql_in(values: type[StrEnum]) -> str:
    """``'a', 'b'`` for a CHECK constraint listing every member of a vocabulary."""
    return ", ".join(f"'{member.value}'" for member in values)


class CausaNotificacion(StrEnum):
    """Why a notification exists: what the recipient is asked to know or to answer."""

    ASIGNACION = "asignacion"
    EMERGENCIA = "emergencia"
    ALERTA = "alerta"
    ESCALACION = "escalacion"
    RECHAZO = "rechazo"  # someone answered "no puedo": the tarea's delegado and supervisors are told


class RespuestaNotificacion(StrEnum):
    ACEPTO = "acepto"
    NO_PUEDO = "no_puedo"
    LEIDA = "leida"  # marks it read; it does not answer a notification that asks for acepto / no_puedo


class TipoAlerta(StrEnum):
    CODIGO_ROJO = "codigo_rojo"
    EVACUACION = "evacuacion"
    REFUERZOS = "refuerzos"
    AVISO = "aviso"


class DestinoAlerta(StrEnum):
    TODOS = "todos"
    UNIDAD = "unidad"
    USUARIOS = "usuarios"
