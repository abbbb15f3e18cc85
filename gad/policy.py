"""The one authorization policy: who may do what, used by every service and by websocket delivery.

nivel 1 efectivo: own profile; tareas they are assigned to or delegated; start/pause/resume/finish those;
own efectivo's position and availability; raise an emergency.
nivel 2 supervisor: everything operational (all tareas, efectivos, users in summary).
nivel 3 administrador: also users, deleting tareas, the audit trail and admin endpoints.

Notifications: the system notifies as a consequence of an action this policy already allowed (an
assignment by a supervisor, an emergency by anyone); only supervisors send broadcast alerts; a usuario
reads and answers their own notifications, and supervisors also read anyone's (the board shows answers).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from gad.errors import Forbidden, PasswordChangeRequired
from gad.models import Usuario
from gad.vocab import EstadoTarea, Nivel

# Transitions an efectivo may perform on their own tareas; cancelling stays with supervisors.
TRANSICIONES_EFECTIVO = frozenset({EstadoTarea.EN_CURSO, EstadoTarea.PAUSADA, EstadoTarea.FINALIZADA})


def is_supervisor(actor: Usuario) -> bool:
    return actor.nivel >= Nivel.SUPERVISOR


def is_admin(actor: Usuario) -> bool:
    return actor.nivel >= Nivel.ADMINISTRADOR


def require_nivel(actor: Usuario, nivel: Nivel, action: str) -> None:
    if actor.nivel < nivel:
        raise Forbidden(f"{action} requires nivel {int(nivel)} ({nivel.name.lower()}) or higher.")


def require_emergency_size(actor: Usuario, efectivos: int, most_for_efectivo: int) -> None:
    """Any usuario may raise an emergency, but only a supervisor may send more than ``most_for_efectivo``
    efectivos to one: a nivel-1 account (or its stolen token) must not be able to pull the whole force."""
    if efectivos > most_for_efectivo and not is_supervisor(actor):
        raise Forbidden(f"An efectivo's emergency sends at most {most_for_efectivo} efectivos; a supervisor can assign more.")


def can_read_tarea(actor: Usuario, delegado_id: int | None, assigned_usuario_ids: Collection[int], reporter_id: int | None = None) -> bool:
    """Supervisors read every tarea; anyone else the ones they lead, work, or (an emergency) raised.

    ``assigned_usuario_ids`` are the usuarios who read it through an assignment: active, or released by the
    tarea's end (``gad.services.tarea_queries.READS_THROUGH``, the one definition; the SQL form is
    ``tarea_queries.readable``, and tests/test_tarea_read_rule.py holds every form equal).
    ``reporter_id`` is the usuario who raised an emergency (None for ordinary tareas): raising one lets
    you follow it, not drive it (``can_transition_tarea`` does not take it).
    """
    if is_supervisor(actor):
        return True
    return actor.id == delegado_id or actor.id in assigned_usuario_ids or (reporter_id is not None and actor.id == reporter_id)


def reporter_of(es_emergencia: bool, creado_por_id: int | None) -> int | None:
    """Who raised a tarea, as far as reading it goes: only an emergency's creator."""
    return creado_por_id if es_emergencia else None


def can_transition_tarea(actor: Usuario, delegado_id: int | None, assigned_usuario_ids: set[int], to: EstadoTarea) -> bool:
    if is_supervisor(actor):
        return True
    return to in TRANSICIONES_EFECTIVO and can_read_tarea(actor, delegado_id, assigned_usuario_ids)


def can_read_efectivo(actor: Usuario, efectivo_usuario_id: int | None) -> bool:
    return is_supervisor(actor) or (efectivo_usuario_id is not None and efectivo_usuario_id == actor.id)


def can_report_for_efectivo(actor: Usuario, efectivo_usuario_id: int | None) -> bool:
    """Position and availability: the efectivo themself or a supervisor."""
    return can_read_efectivo(actor, efectivo_usuario_id)


def can_read_agenda(actor: Usuario, efectivo_usuario_id: int | None) -> bool:
    """Turnos, licencias and bookings of an efectivo: supervisors, and the efectivo themself (read only)."""
    return can_read_efectivo(actor, efectivo_usuario_id)


def can_read_usuario(actor: Usuario, usuario_id: int) -> bool:
    return is_supervisor(actor) or actor.id == usuario_id


def can_read_user_stats(actor: Usuario, usuario_id: int) -> bool:
    return can_read_usuario(actor, usuario_id)


def can_end_sessions_of(actor: Usuario, usuario_id: int) -> bool:
    """Log out (one session or everywhere): one's own, or anyone's for an administrador (as Keycloak's admin console)."""
    return is_admin(actor) or actor.id == usuario_id


def require_end_sessions_of(actor: Usuario, usuario_id: int) -> None:
    if not can_end_sessions_of(actor, usuario_id):
        raise Forbidden("Only administradores may end other usuarios' sessions.")


# Personal data of a usuario, and who needs it: the administrador and the person see all of it; a
# supervisor sees the phone (to call someone in the field) but not the DNI or the Telegram id; an
# efectivo reads no other usuario at all. Applied to every REST response that carries a usuario.
PERSONAL_FIELDS = frozenset({"dni", "telefono", "telegram_id"})
SUPERVISOR_PERSONAL_FIELDS = frozenset({"telefono"})


def hidden_personal_fields(actor: Usuario, usuario_id: int) -> frozenset[str]:
    """The personal fields of usuario ``usuario_id`` that ``actor`` may not see."""
    if is_admin(actor) or actor.id == usuario_id:
        return frozenset()
    if is_supervisor(actor):
        return PERSONAL_FIELDS - SUPERVISOR_PERSONAL_FIELDS
    return PERSONAL_FIELDS


def may_search_by_dni(actor: Usuario) -> bool:
    """A search over DNIs would tell who holds one: only for those who may see DNIs."""
    return is_admin(actor)


def may_find_by_telegram_id(actor: Usuario) -> bool:
    """A lookup by Telegram id would tell who holds one: only for those who may see them (a Telegram bridge's
    account, an administrador's, finds who sent a message)."""
    return "telegram_id" not in hidden_personal_fields(actor, 0)


def event_payload_without_personal_data(payload: dict[str, Any]) -> dict[str, Any]:
    """Websocket frames are encoded once and shared by every reader, so they never carry personal data;
    a client that needs it reads the usuario over REST, where ``hidden_personal_fields`` applies."""
    return {key: value for key, value in payload.items() if key not in PERSONAL_FIELDS}


SELF_EDITABLE_FIELDS = frozenset({"nombre", "apellido", "telefono", "password"})


def require_chosen_password(usuario: Usuario) -> None:
    """Raises PasswordChangeRequired while ``usuario`` still has a password an administrador chose (created or
    reset by one): until its owner changes it, the account does nothing else."""
    if usuario.debe_cambiar_clave:
        raise PasswordChangeRequired(f"Change the password an administrador chose first: PATCH /api/v1/users/{usuario.id} with password and current_password.")


def check_usuario_update(actor: Usuario, target_id: int, fields: set[str]) -> None:
    """Admins change anything; a user changes only their own name, phone and password. Someone who must
    change the password an administrador chose changes it before anything else (``require_chosen_password``)."""
    if actor.id == target_id and "password" not in fields:
        require_chosen_password(actor)
    if is_admin(actor):
        return
    if actor.id != target_id:
        raise Forbidden("Only administradores may change other usuarios.")
    forbidden = fields - SELF_EDITABLE_FIELDS
    if forbidden:
        raise Forbidden(f"You may not change: {', '.join(sorted(forbidden))}.")


# Topics a websocket client may subscribe to, by the lowest nivel that sees anything in them.
TOPIC_MIN_NIVEL: dict[str, int] = {"tareas": 1, "emergencias": 1, "efectivos": 1, "turnos": 1, "sistema": 1, "notificaciones": 1, "usuarios": 3, "seguridad": 3}


def visible_topics(actor: Usuario) -> set[str]:
    return {topic for topic, nivel in TOPIC_MIN_NIVEL.items() if actor.nivel >= nivel}


class SubscriptionDecision(NamedTuple):
    granted: set[str]  # topics the request may add or remove
    unknown: set[str]  # no such topic
    forbidden: set[str]  # a topic this usuario's nivel may not see


def decide_subscription(actor: Usuario, topics: set[str]) -> SubscriptionDecision:
    """Which of the topics a websocket client asked for it may (un)subscribe, and which it may not and why."""
    allowed = visible_topics(actor)
    return SubscriptionDecision(granted=topics & allowed, unknown=topics - set(TOPIC_MIN_NIVEL), forbidden=(topics & set(TOPIC_MIN_NIVEL)) - allowed)


def can_see_event(actor: Usuario, topic: str, payload: dict[str, Any]) -> bool:
    """Deliver an event only to someone who could read the changed resource over REST."""
    if topic in ("usuarios", "seguridad"):
        return is_admin(actor)
    if topic in TAREA_TOPICS:
        assigned = {int(uid) for uid in payload.get("asignados_usuario_ids", []) if isinstance(uid, int)}
        reporter = reporter_of(bool(payload.get("es_emergencia")), payload.get("creado_por_usuario_id"))
        return can_read_tarea(actor, payload.get("delegado_usuario_id"), assigned, reporter)
    if topic == "efectivos":
        return can_read_efectivo(actor, payload.get("usuario_id"))
    if topic == "turnos":
        # A turno moved to another efectivo is news to the one who had it, too (``antes_usuario_id``).
        return can_read_agenda(actor, payload.get("usuario_id")) or (
            payload.get("antes_usuario_id") is not None and can_read_agenda(actor, payload["antes_usuario_id"])
        )
    if topic == "notificaciones":
        return can_see_notification_event(actor, payload)
    return topic == "sistema"


TAREA_TOPICS = frozenset({"tareas", "emergencias"})


class TareaNow(NamedTuple):
    """What the read rule needs to know about a tarea as it is now (None in a map: deleted or gone)."""

    delegado_id: int | None
    assigned_usuario_ids: frozenset[int]
    reporter_id: int | None


def can_see_replayed_event(
    actor: Usuario, topic: str, payload: dict[str, Any], tareas_now: Mapping[int, TareaNow], efectivo_owner_now: Mapping[int, int | None]
) -> bool:
    """A replay (``?since=``) hands over history: an event is sent only if it was visible to the actor
    when written *and* the actor may read the resource today — so being unassigned from a tarea also
    ends its replay, exactly as REST then answers 403."""
    if not can_see_event(actor, topic, payload):
        return False
    if is_supervisor(actor):
        return True
    resource_id = payload.get("id")
    if topic in TAREA_TOPICS:
        now = tareas_now.get(resource_id) if isinstance(resource_id, int) else None
        return now is not None and can_read_tarea(actor, now.delegado_id, now.assigned_usuario_ids, now.reporter_id)
    if topic == "efectivos":
        return isinstance(resource_id, int) and can_read_efectivo(actor, efectivo_owner_now.get(resource_id))
    return True


# --- notifications -------------------------------------------------------------------------------


def can_send_alert(actor: Usuario) -> bool:
    """Broadcast alerts (código rojo, evacuación, ...) to everyone, a unidad or chosen usuarios: supervisor+."""
    return is_supervisor(actor)


def can_notify(actor: Usuario, destinatario_id: int) -> bool:
    """Who may cause a notification to whom directly (alerts, resends): supervisors to anyone; an efectivo
    notifies others only through the rules of the actions they may take (an emergency tells supervisors)."""
    return is_supervisor(actor) or actor.id == destinatario_id


def can_read_notificacion(actor: Usuario, destinatario_id: int) -> bool:
    """A usuario reads their own notifications; supervisors read anyone's (answers and escalations on the board)."""
    return is_supervisor(actor) or actor.id == destinatario_id


def can_answer_notificacion(actor: Usuario, destinatario_id: int) -> bool:
    """Only the recipient answers (acepto / no puedo / leída): nobody accepts an assignment for someone else."""
    return actor.id == destinatario_id


def can_see_notification_event(actor: Usuario, payload: dict[str, Any]) -> bool:
    """``notification`` frames (``privada``) go only to their recipient's sockets; answers, escalations and
    alert tallies also to every supervisor."""
    if payload.get("usuario_id") == actor.id:
        return True
    return is_supervisor(actor) and not payload.get("privada", False)
