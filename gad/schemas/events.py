"""Event payloads: one typed definition per event type, used by the writer, the websocket frames and the API docs.

A service builds one of these and hands it to ``gad.realtime.events.record`` (a security event: to
``record_security``); the log stores its JSON and the websocket ``data`` of the frame is exactly that JSON.
Changing a payload's shape is a change here, checked by mypy at every writer; ``EVENT_PAYLOADS`` (domain
events) and ``SECURITY_EVENT_PAYLOADS`` (topic "seguridad") list them all for the OpenAPI document.
"""

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from gad.schemas.common import schema_config


class EventPayload(BaseModel):
    """Base of every event payload. ``event_type`` names the event; fields are the ``data`` of its frame."""

    model_config = schema_config(extra="forbid", populate_by_name=True)
    event_type: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        """The payload as stored and sent: wire names (``from``), and only the fields the writer set."""
        return self.model_dump(by_alias=True, exclude_unset=True)


EVENT_PAYLOADS: dict[str, type[EventPayload]] = {}


def _register(*classes: type[EventPayload]) -> None:
    for cls in classes:
        EVENT_PAYLOADS[cls.event_type] = cls


# --- tareas (topic "tareas", or "emergencias" for an emergency) ---------------------------------------


class TareaEvent(EventPayload):
    """What every tarea event carries: the tarea's summary and who is assigned (the websocket read policy needs it)."""

    id: int
    codigo: str
    titulo: str
    tipo: str
    prioridad: int
    estado: str
    es_emergencia: bool
    delegado_usuario_id: int | None
    # Who raised it: for an emergency, that usuario may follow it (gad.policy.can_read_tarea).
    creado_por_usuario_id: int | None = None
    ubicacion_lat: float | None
    ubicacion_lng: float | None
    version: int
    asignados_usuario_ids: list[int] = Field(
        description="Usuarios who read it through an assignment: those assigned now and, once it ended, those its end released"
    )


class TaskCreated(TareaEvent):
    event_type = "task_created"


class EmergencyCreated(TareaEvent):
    event_type = "emergency_created"


class TaskUpdated(TareaEvent):
    event_type = "task_updated"
    before: dict[str, Any] = Field(description="Changed fields (column names) before the change")
    after: dict[str, Any] = Field(description="The same fields after the change")


class StatusChange(BaseModel):
    """A state change: from which value to which, and why (``motivo`` may be null)."""

    model_config = schema_config()
    from_: str = Field(alias="from")
    to: str
    motivo: str | None


class TaskStatusChanged(TareaEvent, StatusChange):
    event_type = "task_status_changed"


class TaskAssigned(TareaEvent):
    event_type = "task_assigned"
    efectivo_ids: list[int]
    fuera_de_turno: list[int] | None = Field(None, description="Efectivos booked outside their turnos (issue 17); absent for emergencies")


class TaskUnassigned(TareaEvent):
    event_type = "task_unassigned"
    efectivo_ids: list[int]
    motivo: str | None = Field(None, description='"no_puedo" when the efectivo declined the assignment')


class TaskDeleted(TareaEvent):
    event_type = "task_deleted"


# --- efectivos (topic "efectivos") --------------------------------------------------------------------


class EfectivoEvent(EventPayload):
    id: int
    usuario_id: int | None
    codigo_interno: str
    nombre: str
    unidad: str | None
    estado_disponibilidad: str
    lat: float | None
    lng: float | None
    posicion_en: str | None = Field(description="ISO 8601 time of the last reported position")


class EfectivoCreated(EfectivoEvent):
    event_type = "efectivo_created"


class EfectivoUpdated(EfectivoEvent):
    event_type = "efectivo_updated"
    changed: list[str] | None = Field(None, description="Fields an edit changed (absent on deactivation)")
    activo: bool | None = Field(None, description="false when the efectivo was deactivated (absent on an edit)")


class EfectivoStatusChanged(EfectivoEvent, StatusChange):
    event_type = "efectivo_status_changed"


class EfectivoLocationUpdate(EfectivoEvent):
    event_type = "efectivo_location_update"


# --- usuarios (topic "usuarios", administradores only) ------------------------------------------------


class UsuarioSummary(BaseModel):
    model_config = schema_config(extra="forbid")

    id: int
    email: str
    nombre: str
    apellido: str
    nivel: int
    activo: bool


class UserCreated(EventPayload, UsuarioSummary):
    event_type = "user_created"


class UserUpdated(EventPayload):
    event_type = "user_updated"
    before: UsuarioSummary
    after: UsuarioSummary


# --- agenda (topic "turnos"): turnos and licencias of one efectivo -----------------------------------


class AgendaEvent(EventPayload):
    """Whose agenda changed: ``usuario_id`` lets the websocket policy show an efectivo their own."""

    efectivo_id: int
    usuario_id: int | None
    unidad: str | None


class TurnosCreated(AgendaEvent):
    event_type = "turnos_created"
    serie: str | None = Field(description="Shared by the shifts of one repeating pattern; null for a single shift")
    turnos: list[dict[str, Any]] = Field(description="Every shift created: id, tipo, unidad, inicio, fin, serie, notas, version, ...")


class TurnoUpdated(AgendaEvent):
    event_type = "turno_updated"
    before: dict[str, Any]
    turno: dict[str, Any]
    antes_usuario_id: int | None = Field(
        default=None, description="When the turno moved to another efectivo: the former one's usuario, who is told too (absent otherwise)"
    )


class TurnoDeleted(AgendaEvent):
    event_type = "turno_deleted"
    turno: dict[str, Any]


class LicenciaCreated(AgendaEvent):
    event_type = "licencia_created"
    licencia: dict[str, Any]


class LicenciaDeleted(AgendaEvent):
    event_type = "licencia_deleted"
    licencia: dict[str, Any]


_register(
    TurnosCreated,
    TurnoUpdated,
    TurnoDeleted,
    LicenciaCreated,
    LicenciaDeleted,
)
# --- imports from the system GAD replaces (topic "sistema"): one event per batch, never one per row -----


class ImportStarted(EventPayload):
    event_type = "import_started"
    sistema: str = Field(description="Where the data comes from: grupo_gad")
    database: str
    host: str | None
    port: int | None
    revision: str = Field(description="The source's migration revision")
    rows: dict[str, int] = Field(description="Source rows per entity")


class ImportBatch(EventPayload):
    event_type = "import_batch"
    sistema: str
    entidad: str = Field(description="usuario, efectivo, tarea or historial")
    rows: int
    old_ids: list[int] = Field(description="First and last old id imported by this batch")
    new_ids: list[int] = Field(description="First and last GAD id created by this batch")


class ImportFinished(EventPayload):
    event_type = "import_finished"
    sistema: str
    dry_run: bool
    counts: dict[str, dict[str, int]] = Field(description="Per entity: source, imported, unchanged, changed, skipped")
    asignaciones: int
    renumbered: int = Field(0, description="Rows whose GRUPO_GAD id GAD already used, given a new one")
    disponibilidad_settled: int = Field(0, description="Efectivos whose availability GAD's rule set from the assignments imported")
    problems: int
    changed: int
    disagreements: int
    interrupted: bool
    stopped: bool


# --- notifications (topic "notificaciones") -----------------------------------------------------------


class NotificationEvent(EventPayload):
    """A notification as REST shows it (``NotificacionOut``). ``privada``: only the recipient's sockets get it."""

    id: int
    usuario_id: int
    destinatario: str
    causa: str
    titulo: str
    texto: str
    prioridad: int
    requiere_respuesta: bool
    estado: str
    tarea_id: int | None
    efectivo_id: int | None
    alerta_id: int | None
    origen_id: int | None
    creada_en: str | None
    entregada_en: str | None
    leida_en: str | None
    respuesta: str | None
    motivo: str | None
    respondida_en: str | None
    escalar_en: str | None
    escalada_en: str | None
    privada: bool | None = Field(None, description="true: delivered to the recipient's sockets only")
    reenvio: int | None = Field(None, description="How many times an alert was resent to this recipient")


class Notification(NotificationEvent):
    event_type = "notification"


class NotificationRead(NotificationEvent):
    event_type = "notification_read"


class NotificationAnswered(NotificationEvent):
    event_type = "notification_answered"


class NotificationEscalated(NotificationEvent):
    event_type = "notification_escalated"


class NotificationWithdrawn(NotificationEvent):
    """A question its recipient need no longer answer (its alert was closed): their devices stop asking it."""

    event_type = "notification_withdrawn"


class NotificationDelivered(EventPayload):
    event_type = "notification_delivered"
    usuario_id: int
    ids: list[int] = Field(description="Notifications a device of this usuario reported as received")


class AlertTally(EventPayload):
    event_type = "alert_tally"
    alerta_id: int
    cerrada: bool | None = None
    total: int
    confirmados: int
    no_pueden: int
    pendientes: int
    entregadas: int


class AlertEvent(AlertTally):
    """A broadcast alert and its tally."""

    id: int
    tipo: str
    texto: str
    prioridad: int
    destino: str
    unidad: str | None
    creado_por_usuario_id: int
    created_at: str
    cerrada_en: str | None


class AlertCreated(AlertEvent):
    event_type = "alert_created"


class AlertClosed(AlertEvent):
    event_type = "alert_closed"


# --- security (topic "seguridad", administradores only): written by ``gad.realtime.events.record_security`` --


class SecurityEvent(EventPayload):
    """Base of the security events. ``record_security`` folds repeats of some kinds per source and window."""


class Folded(SecurityEvent):
    """A kind an attacker can repeat at will: only the first of a burst is written, the rest become its count."""

    aggregated_until: str | None = Field(default=None, description="End of the window whose repetitions are counted, not written")


class Login(SecurityEvent):
    event_type = "login"
    client: str = Field(description="Client address")


class LoginAttempt(SecurityEvent):
    client: str = Field(description="Client address")
    intentos: int = Field(description="Failed attempts counted by the throttle")
    email: str | None = Field(default=None, description="The e-mail tried, when it names no usuario (absent otherwise)")


class LoginFailed(LoginAttempt, Folded):
    event_type = "login_failed"


class AccountLocked(LoginAttempt):
    event_type = "account_locked"


class Logout(SecurityEvent):
    """A token revoked (``jti``) or a browser session ended (``session_id``, ``usuario_id``)."""

    event_type = "logout"
    jti: str | None = Field(default=None, description="The revoked token (bearer logout)")
    session_id: int | None = Field(default=None, description="The ended session (dashboard logout)")
    usuario_id: int | None = Field(default=None, description="Whose session ended")


class TokensRevoked(SecurityEvent):
    event_type = "tokens_revoked"
    usuario_id: int
    reason: Literal["password", "deactivated", "logout_everywhere"]


class RoleChanged(SecurityEvent):
    event_type = "role_changed"
    usuario_id: int
    # Aliased for the wire and the log only: ``from`` is a Python keyword, so writers say ``from_``.
    from_: int = Field(validation_alias="from", serialization_alias="from", description="Nivel before")
    to: int = Field(description="Nivel after")


class UserDisabled(SecurityEvent):
    event_type = "user_disabled"
    usuario_id: int


class PermissionDenied(Folded):
    event_type = "permission_denied"
    method: str
    path: str


class SecurityEventsAggregated(SecurityEvent):
    """The repetitions of a folded kind from one source in one window, written when the window has ended."""

    event_type = "security_events_aggregated"
    # Stored as "event_type" (the folded kind), which names the payload class itself here.
    kind: str = Field(validation_alias="event_type", serialization_alias="event_type", description="The kind folded: login_failed or permission_denied")
    source: str
    actor_id: int | None
    count: int
    samples: list[str] = Field(description="Up to ten distinct e-mails tried or requests refused")
    window_start: str
    window_end: str
    last_at: str


# Apart from EVENT_PAYLOADS (the domain events): written by one function of their own, on one topic.
SECURITY_EVENT_PAYLOADS: dict[str, type[SecurityEvent]] = {
    cls.event_type: cls
    for cls in (Login, LoginFailed, AccountLocked, Logout, TokensRevoked, RoleChanged, UserDisabled, PermissionDenied, SecurityEventsAggregated)
}

_register(
    TaskCreated,
    EmergencyCreated,
    TaskUpdated,
    TaskStatusChanged,
    TaskAssigned,
    TaskUnassigned,
    TaskDeleted,
    EfectivoCreated,
    EfectivoUpdated,
    EfectivoStatusChanged,
    EfectivoLocationUpdate,
    UserCreated,
    UserUpdated,
    ImportStarted,
    ImportBatch,
    ImportFinished,
    Notification,
    NotificationRead,
    NotificationAnswered,
    NotificationEscalated,
    NotificationWithdrawn,
    NotificationDelivered,
    AlertTally,
    AlertCreated,
    AlertClosed,
)
