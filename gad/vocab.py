"""The domain vocabulary (estados, tipos, niveles) as the API and the database spell it; imports nothing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
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


# The state machine (docs/ARCHITECTURE.md §6): anything not listed here is rejected with 409.
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
# Emergency codes are issued by the service alone; no other tarea may take this prefix.
PREFIJO_EMERGENCIA = "EMG-"

# Every instant the service accepts or stores lies in [TIEMPO_MIN, TIEMPO_MAX) once converted to UTC.
# Python's datetime stops at year 9999: a value such as 9999-12-31T23:59:59-14:00 is year 10000 in UTC,
# which PostgreSQL stores but psycopg2 cannot read back. The schemas answer 422 outside the window and
# CHECK constraints refuse it in the database (migration 0004b).
TIEMPO_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TIEMPO_MAX = datetime(2200, 1, 1, tzinfo=UTC)

# PostgreSQL's ``integer``: a larger value, as a parameter of a prepared statement (gad.pg.Prepared), would not
# even fit the parameter's type.
PG_INTEGER_MAX = 2**31 - 1
# The largest id a row can have (``integer`` keys): a larger one names nothing.
ID_MAX = PG_INTEGER_MAX
# The largest event id (``eventos.id`` is a ``bigint``): a cursor past it names no event and fits no parameter.
EVENT_ID_MAX = 2**63 - 1

MOTIVOS_AUTOMATICOS: dict[EstadoTarea, str] = {
    EstadoTarea.EN_CURSO: "Tarea iniciada",
    EstadoTarea.FINALIZADA: "Tarea completada",
    EstadoTarea.CANCELADA: "Tarea cancelada",
    EstadoTarea.PAUSADA: "Tarea pausada",
}
MOTIVO_POR_DEFECTO = "Cambio de estado"
# Back to en_curso from a pause is no start: "Tarea iniciada" there read as if the work began again.
MOTIVO_REANUDADA = "Tarea reanudada"


def sql_in(values: Iterable[StrEnum]) -> str:
    """``'a', 'b'`` for a CHECK constraint listing the members given (a vocabulary: every member)."""
    return ", ".join(f"'{member.value}'" for member in values)


class TipoTurno(StrEnum):
    """servicio: ordinary shift; guardia: on call at the base; reten: reachable at home, callable in."""

    SERVICIO = "servicio"
    GUARDIA = "guardia"
    RETEN = "reten"


class TipoLicencia(StrEnum):
    VACACIONES = "vacaciones"
    ENFERMEDAD = "enfermedad"
    FORMACION = "formacion"
    OTRA = "otra"


def sql_in_time_window(column: str) -> str:
    """A CHECK condition keeping ``column`` inside [TIEMPO_MIN, TIEMPO_MAX) (NULL passes, as in every CHECK)."""
    return f"{column} >= '{TIEMPO_MIN.isoformat()}' AND {column} < '{TIEMPO_MAX.isoformat()}'"


class CausaNotificacion(StrEnum):
    """Why a notification exists: what the recipient is asked to know or to answer."""

    ASIGNACION = "asignacion"
    EMERGENCIA = "emergencia"
    ALERTA = "alerta"
    ESCALACION = "escalacion"
    RECHAZO = "rechazo"  # someone answered "no puedo": the tarea's delegado and supervisors are told
    # A supervisor took the efectivo off a tarea that goes on: they are told, informational (never escalates).
    DESASIGNACION = "desasignacion"


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
