"""Broadcast alerts: a supervisor tells everyone, a unidad or chosen usuarios; tally, resend to those missing, close.

Each recipient gets a notification (gad.services.notificaciones) in the alert's own transaction. The
alert row is the lock that orders everything about it: answers, resends and closing take it first, so
the tally each ``alert_tally`` event carries is exact at its commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gad import policy
from gad.db_session import for_update
from gad.errors import Conflict, Forbidden, NotFound, ValidationProblem, field_error
from gad.extensions import db
from gad.models import Alerta, Efectivo, Notificacion, Usuario, utcnow
from gad.realtime import events
from gad.schemas.events import AlertClosed, AlertCreated, AlertEvent
from gad.services import notificaciones
from gad.vocab import CausaNotificacion, DestinoAlerta, TipoAlerta

TITULOS = {
    TipoAlerta.CODIGO_ROJO: "Código rojo",
    TipoAlerta.EVACUACION: "Evacuación",
    TipoAlerta.REFUERZOS: "Refuerzos",
    TipoAlerta.AVISO: "Aviso",
}
PRIORIDAD_POR_TIPO = {TipoAlerta.CODIGO_ROJO: 5, TipoAlerta.EVACUACION: 5, TipoAlerta.REFUERZOS: 4, TipoAlerta.AVISO: 3}


def _require_sender(actor: Usuario) -> None:
    if not policy.can_send_alert(actor):
        raise Forbidden("Broadcast alerts are sent and followed by supervisors.")


def _recipients(actor: Usuario, destino: DestinoAlerta, unidad: str | None, usuario_ids: list[int] | None) -> list[int]:
    # Never the sender, whatever the destino: their own answer would count in the tally they are waiting on.
    active = Usuario.activo.is_(True)
    if destino == DestinoAlerta.TODOS:
        ids = list(db.session.scalars(select(Usuario.id).where(active, Usuario.id != actor.id).order_by(Usuario.id)))
    elif destino == DestinoAlerta.UNIDAD:
        ids = list(
            db.session.scalars(
                select(Usuario.id)
                .join(Efectivo, Efectivo.usuario_id == Usuario.id)
                .where(active, Efectivo.activo.is_(True), Efectivo.unidad == unidad, Usuario.id != actor.id)
                .order_by(Usuario.id)
            )
        )
    else:
        wanted = list(dict.fromkeys(usuario_ids or []))
        if actor.id in wanted:
            raise ValidationProblem(
                "The sender is not one of an alert's recipients.",
                errors=[field_error("body.usuario_ids", "sender", f"usuario {actor.id} is the sender", es="Quien envía la alerta no se la envía a sí mismo.")],
            )
        found = set(db.session.scalars(select(Usuario.id).where(active, Usuario.id.in_(wanted))))
        unknown = [uid for uid in wanted if uid not in found]
        if unknown:
            raise ValidationProblem(
                "Unknown recipients.",
                errors=[
                    field_error(
                        "body.usuario_ids", "unknown_id", f"usuario {uid} does not exist or is inactive", es=f"El usuario {uid} no existe o no está activo."
                    )
                    for uid in unknown
                ],
            )
        ids = wanted
    if not ids:
        raise ValidationProblem(
            "The alert has no recipients.",
            errors=[field_error("body.destino", "empty", "nobody matches this destino", es="Nadie recibiría la alerta: revise el destino.")],
        )
    for uid in ids:
        if not policy.can_notify(actor, uid):
            raise Forbidden("You may not notify these usuarios.")
    return ids


def create_alerta(actor: Usuario, data: dict[str, Any]) -> Alerta:
    """Send an alert (supervisor+): one notification per recipient, in this transaction.

    Raises Forbidden, ValidationProblem (unknown usuarios, nobody to tell).
    """
    _require_sender(actor)
    tipo = TipoAlerta(data["tipo"])
    destino = DestinoAlerta(data["destino"])
    recipients = _recipients(actor, destino, data.get("unidad"), data.get("usuario_ids"))
    alerta = Alerta(
        tipo=tipo.value,
        texto=data["texto"],
        prioridad=data.get("prioridad") or PRIORIDAD_POR_TIPO[tipo],
        destino=destino.value,
        unidad=data.get("unidad"),
        total=len(recipients),
        creado_por_usuario_id=actor.id,
        created_at=utcnow(),
    )
    db.session.add(alerta)
    db.session.flush()
    notificaciones.notify(
        recipients,
        causa=CausaNotificacion.ALERTA,
        titulo=TITULOS[tipo],
        texto=alerta.texto,
        prioridad=alerta.prioridad,
        actor_id=actor.id,
        requiere_respuesta=True,
        alerta_id=alerta.id,
        now=alerta.created_at,
    )
    _record(AlertCreated, alerta, actor)
    return alerta


def _record(kind: type[AlertEvent], alerta: Alerta, actor: Usuario) -> None:
    data = kind.model_validate(summary(alerta) | {"alerta_id": alerta.id})
    events.record(db.session(), data, topic=notificaciones.TOPIC, entity_type="alerta", entity_id=alerta.id, actor_id=actor.id)


def summary(alerta: Alerta) -> dict[str, Any]:
    """The alert and its tally (what AlertaOut shows, without the list of those missing)."""
    return {
        "id": alerta.id,
        "tipo": alerta.tipo,
        "texto": alerta.texto,
        "prioridad": alerta.prioridad,
        "destino": alerta.destino,
        "unidad": alerta.unidad,
        "creado_por_usuario_id": alerta.creado_por_usuario_id,
        "created_at": alerta.created_at.isoformat(),
        "cerrada_en": alerta.cerrada_en.isoformat() if alerta.cerrada_en else None,
    } | notificaciones.tally(alerta)


def missing(alerta: Alerta) -> list[dict[str, Any]]:
    """Recipients who have not answered, with whether their device got it (while the alert was open, as its
    tally counts) and how often it was resent."""
    rows = db.session.execute(
        select(Notificacion.usuario_id, Usuario.nombre, Usuario.apellido, Notificacion.id, notificaciones.delivered_while_open(alerta), Notificacion.reenvios)
        .join(Usuario, Usuario.id == Notificacion.usuario_id)
        .where(Notificacion.alerta_id == alerta.id, Notificacion.causa == CausaNotificacion.ALERTA.value, Notificacion.respuesta.is_(None))
        .order_by(Usuario.apellido, Usuario.nombre, Usuario.id)
    )
    return [
        {"usuario_id": uid, "nombre": f"{nombre} {apellido}", "notificacion_id": nid, "entregada_en": entregada, "reenvios": reenvios}
        for uid, nombre, apellido, nid, entregada, reenvios in rows
    ]


def _load(alerta_id: int, *, lock: bool = False) -> Alerta:
    query = select(Alerta).where(Alerta.id == alerta_id)
    # FOR NO KEY UPDATE (key_share): it orders the writers of one alert (close, resend, answers) and leaves alone the
    # foreign-key check of a row naming the alert — the sweep's escalation, written while it holds a notification the
    # close then waits for; FOR UPDATE made that a deadlock.
    alerta = db.session.scalar(for_update(query, key_share=True) if lock else query)
    if alerta is None:
        raise NotFound(f"Alerta {alerta_id} does not exist.")
    return alerta


def get_alerta(actor: Usuario, alerta_id: int) -> Alerta:
    _require_sender(actor)
    return _load(alerta_id)


def list_alertas(actor: Usuario, abiertas: bool, limit: int, offset: int) -> tuple[list[Alerta], int]:
    from gad.services.common import paginate

    _require_sender(actor)
    query = select(Alerta).order_by(Alerta.id.desc())
    if abiertas:
        query = query.where(Alerta.cerrada_en.is_(None))
    return paginate(query, limit, offset)


def resend(actor: Usuario, alerta_id: int) -> tuple[Alerta, int]:
    """Deliver the alert again to every recipient who has not answered; returns the alert and how many.

    Raises Forbidden, NotFound, Conflict (closed).
    """
    _require_sender(actor)
    alerta = _load(alerta_id, lock=True)
    if alerta.cerrada_en is not None:
        raise Conflict(f"Alerta {alerta.id} is closed.", mensaje="La alerta está cerrada.")
    pending = list(
        db.session.scalars(
            for_update(
                select(Notificacion)
                .where(Notificacion.alerta_id == alerta.id, Notificacion.causa == CausaNotificacion.ALERTA.value, Notificacion.respuesta.is_(None))
                .order_by(Notificacion.id)
            )
        )
    )
    for n in pending:
        notificaciones.resend(n)
    db.session.flush()
    return alerta, len(pending)


def close(actor: Usuario, alerta_id: int) -> Alerta:
    """Close an alert: nothing more is resent and its unanswered notifications no longer escalate. Idempotent."""
    _require_sender(actor)
    alerta = _load(alerta_id, lock=True)
    if alerta.cerrada_en is not None:
        return alerta
    alerta.cerrada_en = utcnow()
    alerta.cerrada_por_usuario_id = actor.id
    unanswered = db.session.scalars(
        for_update(select(Notificacion).where(Notificacion.alerta_id == alerta.id, Notificacion.respuesta.is_(None)).order_by(Notificacion.id))
    ).all()
    for n in unanswered:
        n.escalar_en = None
    db.session.flush()
    # The recipients' phones would otherwise keep asking a question whose answer is now refused (409).
    notificaciones.withdraw([n for n in unanswered if n.requiere_respuesta], actor.id)
    _record(AlertClosed, alerta, actor)
    return alerta
