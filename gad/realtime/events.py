"""Event log publisher: every committed change appends to ``eventos`` in the same transaction.

Ordering mechanism (docs/ARCHITECTURE.md §3): ids are not taken from a sequence, because a sequence hands out ids at
insert time and a slow transaction can commit id 7 after a fast one committed id 8 — a reader that saw 8
would then skip 7 for ever; and a rolled-back transaction would leave a hole. Instead, pending events
are written at *commit time* (SQLAlchemy ``before_commit``): the transaction increments the single row
of ``eventos_contador`` (``UPDATE ... RETURNING``), which row-locks it until commit or rollback. So
transactions that write events commit one at a time in id order, a rollback gives its ids back, and
the counter keeps increasing even after old events are pruned. The lock is held only for the last
moments of a transaction. ``NOTIFY`` is issued in the same transaction, so PostgreSQL delivers it only
on commit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from gad import metrics
from gad.caching import invalidate_for_events
from gad.db_session import on_commit
from gad.models import Evento, utcnow
from gad.observability import current_request_id
from gad.principal_cache import principals
from gad.realtime import chain
from gad.schemas.events import EventPayload

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "gad_eventos"
_PENDING_KEY = "gad_pending_events"

SECURITY_TOPIC = "seguridad"


@dataclass
class PendingEvent:
    event_type: str
    topic: str
    entity_type: str
    entity_id: int | None
    actor_id: int | None
    payload: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None


def record(session: Session, payload: EventPayload, *, topic: str, entity_type: str, entity_id: int | None, actor_id: int | None) -> None:
    """Queue an event for the current transaction; it is written at commit, or dropped with a rollback.

    The event type and the shape of its data are ``payload``'s class (``gad.schemas.events``).
    """
    _queue(session, PendingEvent(payload.event_type, topic, entity_type, entity_id, actor_id, payload.to_json(), current_request_id()))


def _queue(session: Session, pending: PendingEvent) -> None:
    session.info.setdefault(_PENDING_KEY, []).append(pending)


def record_security(event_type: str, actor_id: int | None, payload: dict[str, Any]) -> None:
    """Security events (logins, lockouts, denials) share the log but only administradores may see them.

    Their payloads are still plain dicts, shaped by the services that write them (auth, usuarios, security).
    """
    from gad.extensions import db

    _queue(db.session(), PendingEvent(event_type, SECURITY_TOPIC, "usuario", actor_id, actor_id, payload, current_request_id()))


@event.listens_for(Session, "before_commit")
def _write_pending_events(session: Session) -> None:
    pending: list[PendingEvent] = session.info.pop(_PENDING_KEY, [])
    if not pending:
        return
    session.flush()
    row = session.execute(text("UPDATE eventos_contador SET last_id = last_id + :n WHERE id = 1 RETURNING last_id, last_hash"), {"n": len(pending)}).first()
    if row is None:
        raise RuntimeError("eventos_contador is empty: run `flask db upgrade`")
    last_id, prev_hash = int(row[0]) - len(pending), str(row[1])
    now = utcnow()
    key = chain.current_key()
    for offset, item in enumerate(pending, start=1):
        fields = {
            "id": last_id + offset,
            "event_type": item.event_type,
            "topic": item.topic,
            "entity_type": item.entity_type,
            "entity_id": item.entity_id,
            "actor_id": item.actor_id,
            "request_id": item.request_id,
            "payload": _jsonable(item.payload),
            "created_at": now,
        }
        digest = chain.link(key, prev_hash, chain.canonical(**fields))
        session.add(Evento(**fields, prev_hash=prev_hash, hash=digest))
        prev_hash = digest
    session.flush()
    # The new head of the chain and the notification in one round trip (delivered only if this commits).
    session.execute(
        text("UPDATE eventos_contador SET last_hash = :h WHERE id = 1 RETURNING pg_notify(:channel, :payload)"),
        {"h": prev_hash, "channel": NOTIFY_CHANNEL, "payload": str(last_id + len(pending))},
    )
    touched = [(item.topic, item.payload) for item in pending]
    on_commit(lambda: invalidate_for_events(touched), session)
    # This process must not serve a revoked token even before its listener hears of the commit.
    on_commit(lambda: principals.invalidate_for_topics({topic for topic, _ in touched}), session)
    on_commit(lambda: metrics.EVENTS_WRITTEN.inc(len(pending)), session)


def _jsonable(payload: dict[str, Any]) -> Any:
    """The payload exactly as JSONB will hand it back, so the hash verifies after a round trip."""
    return json.loads(json.dumps(payload, default=str))


@event.listens_for(Session, "after_rollback")
def _drop_pending_events(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
