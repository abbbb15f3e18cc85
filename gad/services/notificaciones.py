"""The notification ledger: notify in the cause's transaction, answer (acepto / no puedo / leída), escalate once.

Every notification is a row written in the same transaction as what caused it (an assignment, an
efectivo taken off a tarea, an emergency, an alert, an escalation), handed to each active channel
(gad.services.canales; the in-app channel appends a ``notification`` event, so delivery to every socket
of the recipient on any worker or machine, and replay on resume, are the event log's). Answers lock the row (``FOR UPDATE``) so a
second, different answer is refused (409) and the same one is a no-op.

Escalation: a notification that asks for an answer gets a deadline (``escalar_en``, from
``NOTIF_PLAZOS``). Every process runs the sweep (gad.background); the database decides who fires: due
rows are taken with ``FOR UPDATE SKIP LOCKED`` and marked ``escalada_en`` in the transaction that writes
the escalation, so two sweepers never escalate one row twice, a sweeper killed mid-transaction leaves
its rows to the next one, and deadlines that passed while no process was up fire at the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import SQLColumnExpression, and_, case, exists, func, select, update
from sqlalchemy.orm.util import identity_key

from gad import policy
from gad.db_session import for_update
from gad.errors import Conflict, Forbidden, NotFound
from gad.extensions import db
from gad.models import Alerta, Asignacion, Efectivo, Notificacion, NotificacionEntrega, Tarea, Usuario, utcnow
from gad.realtime import events
from gad.schemas.events import (
    AlertTally,
    NotificationAnswered,
    NotificationDelivered,
    NotificationEscalated,
    NotificationEvent,
    NotificationRead,
    NotificationWithdrawn,
)
from gad.services import canales
from gad.services.turnos import usuarios_en_servicio
from gad.vocab import CausaNotificacion, Nivel, RespuestaNotificacion

logger = logging.getLogger(__name__)

TOPIC = canales.NOTIFICATION_TOPIC
SWEEP_BATCH = 200


def estado(n: Notificacion) -> str:
    if n.respuesta == RespuestaNotificacion.ACEPTO:
        return "aceptada"
    if n.respuesta == RespuestaNotificacion.NO_PUEDO:
        return "rechazada"
    if n.leida_en is not None:
        return "leida"
    if n.entregada_en is not None:
        return "entregada"
    return "creada"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def payload(n: Notificacion) -> dict[str, Any]:
    """The notification as the API shows it (NotificacionOut), JSON-ready: the ``data`` of its frames."""
    return {
        "id": n.id,
        "usuario_id": n.usuario_id,
        "destinatario": _nombre(n.usuario_id),
        "causa": n.causa,
        "titulo": n.titulo,
        "texto": n.texto,
        "prioridad": n.prioridad,
        "requiere_respuesta": n.requiere_respuesta,
        "estado": estado(n),
        "tarea_id": n.tarea_id,
        "efectivo_id": n.efectivo_id,
        "alerta_id": n.alerta_id,
        "origen_id": n.origen_id,
        "creada_en": _iso(n.creada_en),
        "entregada_en": _iso(n.entregada_en),
        "leida_en": _iso(n.leida_en),
        "respuesta": n.respuesta,
        "motivo": n.motivo,
        "respondida_en": _iso(n.respondida_en),
        "escalar_en": _iso(n.escalar_en),
        "escalada_en": _iso(n.escalada_en),
    }


def _nombre(usuario_id: int) -> str:
    """The recipient's name for operators' views (the identity map answers after the first lookup)."""
    usuario = db.session.get(Usuario, usuario_id)
    return usuario.nombre_completo if usuario is not None else ""


def _record(kind: type[NotificationEvent], n: Notificacion, actor_id: int | None, **extra: Any) -> None:
    events.record(db.session(), kind.model_validate(payload(n) | extra), topic=TOPIC, entity_type="notificacion", entity_id=n.id, actor_id=actor_id)


def deadline_s(causa: str, prioridad: int) -> int | None:
    """Seconds before an unanswered notification escalates (``NOTIF_PLAZOS``: causa:prioridad, then causa)."""
    plazos: dict[str, int] = current_app.config["NOTIF_PLAZOS"]
    seconds = plazos.get(f"{causa}:{prioridad}", plazos.get(causa))
    return seconds or None


def supervisores_de_guardia() -> list[int]:
    """Supervisors on duty: those of nivel 2+ inside a turno now (gad.services.turnos). When the rota has
    nobody on duty (no turnos planned yet, a gap in the rota), every active supervisor is told instead:
    an emergency or an escalation must never reach nobody."""
    on_duty = usuarios_en_servicio(Nivel.SUPERVISOR)
    if on_duty:
        return sorted(on_duty)
    return list(db.session.scalars(select(Usuario.id).where(Usuario.activo.is_(True), Usuario.nivel >= Nivel.SUPERVISOR).order_by(Usuario.id)))


def new_notificacion(
    usuario_id: int,
    *,
    causa: CausaNotificacion,
    titulo: str,
    texto: str,
    prioridad: int,
    actor_id: int | None,
    now: datetime,
    requiere_respuesta: bool = False,
    **about: int | None,
) -> Notificacion:
    """One unsaved notification; one that asks for an answer gets its deadline from ``NOTIF_PLAZOS``.

    ``about``: tarea_id, asignacion_id, efectivo_id, alerta_id, origen_id.
    """
    seconds = deadline_s(causa.value, prioridad) if requiere_respuesta else None
    return Notificacion(
        usuario_id=usuario_id,
        causa=causa.value,
        titulo=titulo[:200],
        texto=texto,
        prioridad=prioridad,
        requiere_respuesta=requiere_respuesta,
        creado_por_usuario_id=actor_id,
        creada_en=now,
        escalar_en=now + timedelta(seconds=seconds) if seconds else None,
        **about,
    )


def notify(
    usuario_ids: Iterable[int],
    *,
    causa: CausaNotificacion,
    titulo: str,
    texto: str,
    prioridad: int,
    actor_id: int | None,
    requiere_respuesta: bool = False,
    now: datetime | None = None,
    **about: int | None,
) -> list[Notificacion]:
    """Write one notification per recipient in the current transaction and hand each to every active channel.

    Flushes; the caller's transaction commits (or rolls back, and then nobody was notified).
    """
    now = now or utcnow()
    rows = [
        new_notificacion(
            uid, causa=causa, titulo=titulo, texto=texto, prioridad=prioridad, actor_id=actor_id, now=now, requiere_respuesta=requiere_respuesta, **about
        )
        for uid in dict.fromkeys(usuario_ids)  # one notification per recipient, in the order given
    ]
    return write(rows, now)


def write(rows: list[Notificacion], now: datetime) -> list[Notificacion]:
    """Insert prepared notifications (any mix of recipients and causes) and hand them to the channels, in
    a fixed number of round trips however many there are."""
    if not rows:
        return []
    session = db.session()
    session.add_all(rows)
    session.flush()
    _load_recipients(rows)
    _hand_to_channels(rows, now)
    return rows


def _load_recipients(rows: list[Notificacion]) -> None:
    """Every recipient at once: their names go into the frames, one query instead of one per row (none when the
    caller already holds them all, as unassigning does)."""
    session = db.session()
    missing = {n.usuario_id for n in rows if identity_key(Usuario, n.usuario_id) not in session.identity_map}
    if missing:
        list(session.scalars(select(Usuario).where(Usuario.id.in_(missing))))


def withdraw(rows: list[Notificacion], actor_id: int) -> None:
    """Tell each recipient's devices that these questions no longer wait for an answer (``notification_withdrawn``,
    to the recipient alone). The rows stay as they are: unanswered, and that is what the tally keeps."""
    _load_recipients(rows)
    for n in rows:
        _record(NotificationWithdrawn, n, actor_id, privada=True)


def _hand_to_channels(rows: list[Notificacion], now: datetime) -> None:
    session = db.session()
    for canal in canales.active(current_app.config["NOTIF_CANALES"]):
        for n in rows:
            if canal.transactional:
                canal.send(session, n, payload(n))
                session.add(NotificacionEntrega(notificacion_id=n.id, canal=canal.name, estado="enviada", intentos=1, enviada_en=now))
            else:
                session.add(NotificacionEntrega(notificacion_id=n.id, canal=canal.name, estado="pendiente", proximo_intento_en=now))
    session.flush()


def resend(n: Notificacion) -> None:
    """Deliver an existing notification again on every channel (an alert's resend to those missing)."""
    n.reenvios += 1
    session = db.session()
    now = utcnow()
    for canal in canales.active(current_app.config["NOTIF_CANALES"]):
        if canal.transactional:
            canal.send(session, n, payload(n) | {"reenvio": n.reenvios})
        else:
            session.execute(
                update(NotificacionEntrega)
                .where(NotificacionEntrega.notificacion_id == n.id, NotificacionEntrega.canal == canal.name)
                .values(estado="pendiente", proximo_intento_en=now)
            )


def notify_assignment(actor_id: int | None, tarea: Tarea, pairs: Iterable[tuple[Asignacion, Efectivo]]) -> list[Notificacion]:
    """Each newly assigned efectivo linked to a usuario is asked to accept (emergencies with their own deadline)."""
    causa = CausaNotificacion.EMERGENCIA if tarea.es_emergencia else CausaNotificacion.ASIGNACION
    what = "Emergencia" if tarea.es_emergencia else "Nueva asignación"
    now = utcnow()
    rows = [
        new_notificacion(
            efectivo.usuario_id,
            causa=causa,
            titulo=f"{what}: {tarea.codigo}",
            texto=tarea.titulo + (f" — {tarea.descripcion}" if tarea.descripcion else ""),
            prioridad=tarea.prioridad,
            actor_id=actor_id,
            now=now,
            requiere_respuesta=True,
            tarea_id=tarea.id,
            asignacion_id=asignacion.id,
            efectivo_id=efectivo.id,
        )
        for asignacion, efectivo in pairs
        if efectivo.usuario_id is not None
    ]
    return write(rows, now)


def notify_release(actor_id: int, tarea: Tarea, asignacion: Asignacion, efectivo: Efectivo) -> list[Notificacion]:
    """The efectivo a supervisor took off a tarea that goes on is told (their usuario, if linked, and not the
    one who did it): informational, so no deadline and no escalation. It says only what the assignment's
    notification said, the tarea's id, codigo and titulo: from now on the efectivo may not read the tarea
    (``READS_THROUGH``) unless they are its delegado, and the notification is theirs to read
    (``can_read_notificacion``) for good."""
    if efectivo.usuario_id is None or efectivo.usuario_id == actor_id:
        return []
    if tarea.delegado_usuario_id == efectivo.usuario_id:
        # Still its delegado: they keep the tarea and may be needed there; "no acuda" would be false.
        texto = f"{tarea.titulo} — ya no está asignado a ella como efectivo; sigue siendo su delegado."
    else:
        texto = f"{tarea.titulo} — ya no tiene esta tarea asignada: no acuda."
    now = utcnow()
    row = new_notificacion(
        efectivo.usuario_id,
        causa=CausaNotificacion.DESASIGNACION,
        titulo=f"Desasignado: {tarea.codigo}",
        texto=texto,
        prioridad=tarea.prioridad,
        actor_id=actor_id,
        now=now,
        tarea_id=tarea.id,
        asignacion_id=asignacion.id,
        efectivo_id=efectivo.id,
    )
    return write([row], now)


def notify_emergency_supervisors(actor_id: int | None, tarea: Tarea, asignados: int) -> list[Notificacion]:
    """Every supervisor on duty hears of every emergency (whether or not anybody could be assigned)."""
    quien = f"{asignados} efectivo(s) asignado(s)" if asignados else "nadie disponible: asignar a mano"
    return notify(
        supervisores_de_guardia(),
        causa=CausaNotificacion.EMERGENCIA,
        titulo=f"Emergencia {tarea.codigo}",
        texto=f"{tarea.titulo}: {quien}.",
        prioridad=tarea.prioridad,
        actor_id=actor_id,
        tarea_id=tarea.id,
    )


# --- reading -------------------------------------------------------------------------------------

# An unanswered question no longer waits once what it asked about is over: its assignment was released (taken
# off, declined, or the tarea ended: answering is 409) or its alert was closed. The phone asks again, after a
# reload, exactly what this leaves; an escalated one stays (a late answer still tells the supervisors).
_STILL_ASKED = (
    ~exists().where(Asignacion.id == Notificacion.asignacion_id, Asignacion.liberado_en.is_not(None)),
    ~exists().where(Alerta.id == Notificacion.alerta_id, Alerta.cerrada_en.is_not(None)),
)


def list_notificaciones(actor: Usuario, filters: dict[str, Any], limit: int, offset: int) -> tuple[list[Notificacion], int, int]:
    """A page of one usuario's notifications (every usuario's with ``todos``: supervisors, for the board),
    newest first, with the total and the unread count of the usuario asked about.

    Raises Forbidden when an efectivo asks for someone else's.
    """
    usuario_id = filters.get("usuario_id") or actor.id
    if not policy.can_read_notificacion(actor, usuario_id) or (filters.get("todos") and not policy.is_supervisor(actor)):
        raise Forbidden("You may only read your own notifications.")
    mine = Notificacion.usuario_id == usuario_id
    conditions = [] if filters.get("todos") else [mine]
    if filters.get("causa"):
        conditions.append(Notificacion.causa.in_([str(c) for c in filters["causa"]]))
    if filters.get("no_leidas"):
        conditions.append(Notificacion.leida_en.is_(None))
    if filters.get("pendientes"):
        conditions += [Notificacion.requiere_respuesta.is_(True), Notificacion.respuesta.is_(None), *_STILL_ASKED]
    for name in ("tarea_id", "alerta_id"):
        if filters.get(name) is not None:
            conditions.append(getattr(Notificacion, name) == filters[name])
    total = int(db.session.scalar(select(func.count()).select_from(Notificacion).where(*conditions)) or 0)
    unread = int(db.session.scalar(select(func.count()).select_from(Notificacion).where(mine, Notificacion.leida_en.is_(None))) or 0)
    items = list(db.session.scalars(select(Notificacion).where(*conditions).order_by(Notificacion.id.desc()).limit(limit).offset(offset)))
    # The payloads name each recipient: load them in one query rather than one per row.
    list(db.session.scalars(select(Usuario).where(Usuario.id.in_({n.usuario_id for n in items}))))
    return items, total, unread


def get_notificacion(actor: Usuario, notificacion_id: int) -> Notificacion:
    n = db.session.get(Notificacion, notificacion_id)
    if n is None or not policy.can_read_notificacion(actor, n.usuario_id):
        # Someone else's notification does not exist as far as an efectivo can tell.
        raise NotFound(f"Notificación {notificacion_id} does not exist.")
    return n


# --- delivery and answers ------------------------------------------------------------------------


def mark_delivered(usuario_id: int, ids: list[int]) -> list[int]:
    """A device of ``usuario_id`` received these notifications (its socket said so); returns those newly marked."""
    if not ids:
        return []
    # Locked before the clock is read: a close holding these rows (it locks its unanswered notifications) is
    # then over when the time is taken, so a report it held up is dated after the close and its tally stays final.
    pending = list(
        db.session.scalars(
            for_update(
                select(Notificacion.id)
                .where(Notificacion.id.in_(ids), Notificacion.usuario_id == usuario_id, Notificacion.entregada_en.is_(None))
                .order_by(Notificacion.id),
                key_share=True,  # the lock the UPDATE would take (FOR NO KEY UPDATE): rows naming these are not held up
            )
        )
    )
    if not pending:
        return []
    now = utcnow()
    marked = list(db.session.scalars(update(Notificacion).where(Notificacion.id.in_(pending)).values(entregada_en=now).returning(Notificacion.id)))
    if marked:
        delivered = NotificationDelivered(usuario_id=usuario_id, ids=sorted(marked))
        events.record(db.session(), delivered, topic=TOPIC, entity_type="usuario", entity_id=usuario_id, actor_id=usuario_id)
    return marked


def ack(actor: Usuario, notificacion_id: int, respuesta: RespuestaNotificacion, motivo: str | None) -> Notificacion:
    """Answer a notification: ``leida`` marks it read; ``acepto`` / ``no_puedo`` answer it, once.

    The same answer again changes nothing (idempotent); a different one raises Conflict (409), as does an
    answer to a notice that asks for none (``requiere_respuesta`` false: only ``leida``) or to an alert closed
    meanwhile (its tally is final). "No puedo" to an assignment releases that assignment in this transaction,
    tells the tarea's delegado and the supervisors on duty, and for an emergency assigns the next nearest
    available efectivo.
    Raises NotFound, Forbidden (not the recipient), Conflict.
    """
    peek = get_notificacion(actor, notificacion_id)
    if not policy.can_answer_notificacion(actor, peek.usuario_id):
        raise Forbidden("Only the recipient answers a notification.")
    alerta = None
    if peek.alerta_id is not None:
        # Lock order alerta -> notificacion (as resend and close do): the tally an answer announces is exact.
        alerta = db.session.scalar(for_update(select(Alerta).where(Alerta.id == peek.alerta_id), key_share=True))  # as alertas._load
    n = db.session.scalar(for_update(select(Notificacion).where(Notificacion.id == notificacion_id)))
    assert n is not None
    now = utcnow()
    changed = False
    if n.entregada_en is None:
        n.entregada_en = now  # answering proves it arrived
        changed = True
    if respuesta == RespuestaNotificacion.LEIDA:
        if n.leida_en is None:
            n.leida_en = now
            changed = True
        if changed:
            db.session.flush()
            _record(NotificationRead, n, actor.id, privada=True)
        return n
    if n.respuesta is not None:
        if n.respuesta == respuesta.value:
            return n
        raise Conflict(
            f"Notificación {n.id} was already answered {n.respuesta}; it cannot become {respuesta.value}.",
            mensaje="Ya se respondió de otra manera.",
            respuesta_actual=n.respuesta,
        )
    if not n.requiere_respuesta:
        raise Conflict(f"Notificación {n.id} asks for no answer: mark it leida.", mensaje="Este aviso no pide respuesta.", respuesta_actual=None)
    if alerta is not None and alerta.cerrada_en is not None:
        raise Conflict(f"Alerta {alerta.id} was closed; it takes no more answers.", mensaje="La central cerró la alerta.", respuesta_actual=None)
    asignacion = None
    if n.asignacion_id is not None:
        # Lock order tarea -> asignacion, as unassigning does, so the two never deadlock.
        if n.tarea_id is not None:
            db.session.execute(for_update(select(Tarea.id).where(Tarea.id == n.tarea_id)))
        asignacion = db.session.scalar(for_update(select(Asignacion).where(Asignacion.id == n.asignacion_id)))
    if asignacion is not None and asignacion.liberado_en is not None:
        raise Conflict(
            f"The assignment of notificación {n.id} was already released; there is nothing to answer.",
            mensaje="Esa asignación ya no está en pie.",
            respuesta_actual=None,
        )
    n.respuesta = respuesta.value
    n.motivo = motivo
    n.respondida_en = now
    if n.leida_en is None:
        n.leida_en = now
    db.session.flush()
    _record(NotificationAnswered, n, actor.id)
    if alerta is not None:
        _record_tally(alerta)
    if respuesta == RespuestaNotificacion.NO_PUEDO and asignacion is not None:
        from gad.services import respuestas

        respuestas.decline_assignment(actor, n, asignacion)
    return n


# --- escalation ----------------------------------------------------------------------------------

_DUE = (
    select(Notificacion)
    .where(Notificacion.escalar_en.is_not(None), Notificacion.escalada_en.is_(None), Notificacion.respuesta.is_(None))
    .order_by(Notificacion.escalar_en, Notificacion.id)
)


def escalate_due(now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """Escalate notifications whose deadline passed, each exactly once; returns how many were handled.

    ``FOR UPDATE SKIP LOCKED``: rows another sweeper holds are skipped, not waited for, and PostgreSQL
    re-checks the WHERE clause on each row it locks, so a row escalated and committed by another sweeper
    meanwhile is not returned. Flushes; the caller commits (gad.background does, once per batch).
    """
    now = now or utcnow()
    due = list(db.session.scalars(for_update(_DUE.where(Notificacion.escalar_en <= now).limit(limit), skip_locked=True)))
    if not due:
        return 0
    released = _released_assignments({n.asignacion_id for n in due if n.asignacion_id is not None})
    supervisors = supervisores_de_guardia()
    escalations: list[Notificacion] = []
    for n in due:
        if n.asignacion_id in released:
            n.escalar_en = None  # the assignment ended some other way: nobody needs to answer it any more
            continue
        n.escalada_en = now
        _record(NotificationEscalated, n, None)
        escalations += [
            new_notificacion(
                uid,
                causa=CausaNotificacion.ESCALACION,
                titulo=f"Sin respuesta: {n.titulo}",
                # Said to people: the notification it escalates is origen_id, and the sweeper's delay is in the log.
                texto=f"Nadie respondió a «{n.titulo}» dentro del plazo.",
                prioridad=max(n.prioridad, 4),
                actor_id=None,
                now=now,
                tarea_id=n.tarea_id,
                efectivo_id=n.efectivo_id,
                alerta_id=n.alerta_id,
                origen_id=n.id,
            )
            for uid in supervisors
        ]
    # One batch for the whole sweep: under load every round trip costs, and a sweep may hold 200 rows.
    write(escalations, now)
    return len(due)


_PENDING = (Notificacion.escalar_en.is_not(None), Notificacion.escalada_en.is_(None), Notificacion.respuesta.is_(None))
_NEXT_DUE = select(func.min(Notificacion.escalar_en)).where(*_PENDING)


def next_deadline() -> datetime | None:
    """The earliest pending deadline (one read of the partial index), so a sweeper can wake up right then."""
    return db.session.scalar(_NEXT_DUE)


def _released_assignments(ids: set[int]) -> set[int]:
    if not ids:
        return set()
    rows = db.session.scalars(select(Asignacion.id).where(and_(Asignacion.id.in_(ids), Asignacion.liberado_en.is_not(None))))
    return set(rows)


# --- alerts' tally (used by gad.services.alertas too) --------------------------------------------


def delivered_while_open(alerta: Alerta) -> SQLColumnExpression[datetime | None]:
    """A recipient's ``entregada_en`` as the alert counts it: a closed alert's tally is final, so a phone that
    reports the alert (or reads it) after the close is not counted, though its notification keeps the fact."""
    if alerta.cerrada_en is None:
        return Notificacion.entregada_en
    return case((Notificacion.entregada_en <= alerta.cerrada_en, Notificacion.entregada_en), else_=None)


def tally(alerta: Alerta) -> dict[str, int]:
    row = db.session.execute(
        select(
            func.count(),
            func.count().filter(Notificacion.respuesta == RespuestaNotificacion.ACEPTO.value),
            func.count().filter(Notificacion.respuesta == RespuestaNotificacion.NO_PUEDO.value),
            func.count(delivered_while_open(alerta)),
        ).where(Notificacion.alerta_id == alerta.id, Notificacion.causa == CausaNotificacion.ALERTA.value)
    ).one()
    total, confirmados, no_pueden, entregadas = (int(v) for v in row)
    return {"total": total, "confirmados": confirmados, "no_pueden": no_pueden, "pendientes": total - confirmados - no_pueden, "entregadas": entregadas}


def _record_tally(alerta: Alerta) -> None:
    """The live tally, counted under the alert's row lock: the last event always shows the exact count."""
    counts = AlertTally(alerta_id=alerta.id, cerrada=alerta.cerrada_en is not None, **tally(alerta))
    events.record(db.session(), counts, topic=TOPIC, entity_type="alerta", entity_id=alerta.id, actor_id=None)


# --- outbound channels ---------------------------------------------------------------------------

_OUTBOUND_DUE = (
    select(NotificacionEntrega).where(NotificacionEntrega.estado == "pendiente").order_by(NotificacionEntrega.proximo_intento_en, NotificacionEntrega.id)
)


def deliver_outbound(now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """Send pending deliveries of outbound channels (Telegram, Web Push...) once each, with retries.

    Rows are taken with ``FOR UPDATE SKIP LOCKED`` like escalations, so one process sends each attempt. A
    failed attempt is retried after 2, 4, 8... seconds, and after ``NOTIF_REINTENTOS`` attempts the
    delivery is ``fallida`` (the in-app channel and the ledger still hold the notification). Flushes.
    """
    if all(canal.transactional for canal in canales.active(current_app.config["NOTIF_CANALES"])):
        return 0  # only in-app: nothing is ever pending, skip the query (the sweep runs every second)
    now = now or utcnow()
    rows = list(db.session.scalars(for_update(_OUTBOUND_DUE.where(NotificacionEntrega.proximo_intento_en <= now).limit(limit), skip_locked=True)))
    attempts = int(current_app.config["NOTIF_REINTENTOS"])
    for entrega in rows:
        canal = canales.get_canal(entrega.canal)
        n = db.session.get(Notificacion, entrega.notificacion_id)
        entrega.intentos += 1
        try:
            if canal is None or n is None:
                raise LookupError(f"channel {entrega.canal!r} is not registered in this process")
            canal.send(db.session(), n, payload(n))
        except Exception as exc:  # noqa: BLE001 - any failure of a channel is recorded and retried, never raised into the sweep
            entrega.ultimo_error = f"{type(exc).__name__}: {exc}"[:500]
            if entrega.intentos >= attempts:
                entrega.estado = "fallida"
                entrega.proximo_intento_en = None
                logger.warning("notification %s: channel %s failed %d times, giving up", entrega.notificacion_id, entrega.canal, entrega.intentos)
            else:
                entrega.proximo_intento_en = now + timedelta(seconds=2**entrega.intentos)
        else:
            entrega.estado = "enviada"
            entrega.enviada_en = now
            entrega.proximo_intento_en = None
    db.session.flush()
    return len(rows)
