"""The audit trail: verify the hash chain, prune beyond retention with a re-anchor, query events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, text

from gad import policy
from gad.extensions import db
from gad.models import AuditoriaAncla, Evento, Usuario, utcnow
from gad.realtime import chain
from gad.vocab import Nivel

VERIFY_BATCH = 2000


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None


def verify_chain() -> VerifyResult:
    """Walk the log in id order from the last pruning anchor; report the first event whose content or link is wrong."""
    anchor = db.session.scalar(select(AuditoriaAncla).order_by(AuditoriaAncla.id.desc()).limit(1))
    expected_prev = anchor.last_hash if anchor else chain.GENESIS
    expected_id: int | None = anchor.pruned_up_to_id + 1 if anchor else 1
    checked = 0
    cursor = anchor.pruned_up_to_id if anchor else 0
    while True:
        rows = list(db.session.scalars(select(Evento).where(Evento.id > cursor).order_by(Evento.id).limit(VERIFY_BATCH)))
        for event in rows:
            if expected_id is not None and event.id != expected_id:
                return VerifyResult(False, checked, expected_id, f"event {expected_id} is missing (next stored id is {event.id})")
            if event.prev_hash != expected_prev:
                return VerifyResult(False, checked, event.id, f"event {event.id} does not link to the previous event's hash")
            content = chain.canonical(
                id=event.id,
                event_type=event.event_type,
                topic=event.topic,
                entity_type=event.entity_type,
                entity_id=event.entity_id,
                actor_id=event.actor_id,
                request_id=event.request_id,
                payload=event.payload,
                created_at=event.created_at,
            )
            if chain.link(event.prev_hash, content) != event.hash:
                return VerifyResult(False, checked, event.id, f"event {event.id} content does not match its hash")
            expected_prev, expected_id, cursor = event.hash, event.id + 1, event.id
            checked += 1
        if len(rows) < VERIFY_BATCH:
            break
    head = db.session.scalar(text("SELECT last_id FROM eventos_contador WHERE id = 1")) or 0
    if expected_id is not None and expected_id <= head:
        return VerifyResult(False, checked, expected_id, f"events {expected_id}..{head} are missing from the end of the log")
    return VerifyResult(True, checked)


def prune(older_than_days: int, actor: str) -> AuditoriaAncla | None:
    """Delete events older than the retention window and re-anchor the chain at the last pruned one.

    The only path allowed past the append-only trigger (``SET LOCAL gad.allow_prune``); the anchor row
    records what was pruned and by whom, so ``verify_chain`` starts from it.
    """
    cutoff = utcnow() - timedelta(days=older_than_days)
    last = db.session.scalar(select(Evento).where(Evento.created_at < cutoff).order_by(Evento.id.desc()).limit(1))
    if last is None:
        return None
    db.session.execute(text("SET LOCAL gad.allow_prune = 'on'"))
    result = db.session.execute(text("DELETE FROM eventos WHERE id <= :id"), {"id": last.id})
    anchor = AuditoriaAncla(pruned_up_to_id=last.id, last_hash=last.hash, pruned_count=int(result.rowcount or 0), actor=actor)  # type: ignore[attr-defined]
    db.session.add(anchor)
    db.session.execute(text("SET LOCAL gad.allow_prune = 'off'"))
    db.session.flush()
    return anchor


def list_events(
    actor: Usuario,
    *,
    actor_id: int | None,
    entity_type: str | None,
    entity_id: int | None,
    event_type: str | None,
    desde: datetime | None,
    hasta: datetime | None,
    after_id: int,
    limit: int,
) -> tuple[list[Evento], int | None]:
    """Administradores only. Cursor pagination by event id (never by time: ids are the commit order)."""
    policy.require_nivel(actor, Nivel.ADMINISTRADOR, "Reading the audit trail")
    query: Select[Any] = select(Evento).where(Evento.id > after_id)
    if actor_id is not None:
        query = query.where(Evento.actor_id == actor_id)
    if entity_type:
        query = query.where(Evento.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(Evento.entity_id == entity_id)
    if event_type:
        query = query.where(Evento.event_type == event_type)
    if desde is not None:
        query = query.where(Evento.created_at >= desde)
    if hasta is not None:
        query = query.where(Evento.created_at < hasta)
    items = list(db.session.scalars(query.order_by(Evento.id).limit(limit + 1)))
    next_cursor = items[limit - 1].id if len(items) > limit else None
    return items[:limit], next_cursor


# How far back the board's "Últimos eventos" looks for events its viewer may see (bounded work per page load).
RECENT_SCAN = 2000


def recent_events(actor: Usuario, limit: int) -> list[Evento]:
    """The newest ``limit`` events this usuario would have received live (same visibility as the websocket), newest first."""
    topics = policy.visible_topics(actor)
    rows = db.session.scalars(select(Evento).where(Evento.topic.in_(sorted(topics))).order_by(Evento.id.desc()).limit(RECENT_SCAN))
    out: list[Evento] = []
    for event in rows:
        if policy.can_see_event(actor, event.topic, event.payload):
            out.append(event)
            if len(out) >= limit:
                break
    return out
