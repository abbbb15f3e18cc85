"""Event log publisher: every committed change appends to ``eventos`` in the same transaction.

Ordering mechanism (DESIGN §5): ids are not taken from a sequence, because a sequence hands out ids at
insert time and a slow transaction can commit id 7 after a fast one committed id 8 — a reader that saw 8
would then skip 7 for ever. Instead, pending events are written at *commit time* (SQLAlchemy
``before_commit``) while holding a transaction-scoped advisory lock; under that lock the next id is
``max(id) + 1``. The lock is released only when the transaction commits or rolls back, so transactions
that write events commit one at a time in id order, and a rolled-back transaction leaves no hole.
``NOTIFY`` is issued in the same transaction, so PostgreSQL delivers it only on commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from gad.cache_keys import invalidate_for_events
from gad.db_session import on_commit
from gad.models import Evento, utcnow
from gad.observability import current_request_id

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "gad_eventos"
# Any constant works; it only has to be the same in every process writing events.
EVENT_LOCK_KEY = 727_001
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


def record(
    session: Session,
    event_type: str,
    topic: str,
    entity_type: str,
    entity_id: int | None,
    actor_id: int | None,
    payload: dict[str, Any],
) -> None:
    """Queue an event for the current transaction; it is written at commit, or dropped with a rollback."""
    session.info.setdefault(_PENDING_KEY, []).append(PendingEvent(event_type, topic, entity_type, entity_id, actor_id, payload, current_request_id()))


def record_security(event_type: str, actor_id: int | None, payload: dict[str, Any]) -> None:
    """Security events (logins, lockouts, denials) share the log but only administradores may see them."""
    from gad.extensions import db

    record(db.session(), event_type, SECURITY_TOPIC, "usuario", actor_id, actor_id, payload)


@event.listens_for(Session, "before_commit")
def _write_pending_events(session: Session) -> None:
    pending: list[PendingEvent] = session.info.pop(_PENDING_KEY, [])
    if not pending:
        return
    session.flush()
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOCK_KEY})
    last_id = session.scalar(select(func.coalesce(func.max(Evento.id), 0))) or 0
    now = utcnow()
    for offset, item in enumerate(pending, start=1):
        session.add(
            Evento(
                id=last_id + offset,
                event_type=item.event_type,
                topic=item.topic,
                entity_type=item.entity_type,
                entity_id=item.entity_id,
                actor_id=item.actor_id,
                request_id=item.request_id,
                payload=item.payload,
                created_at=now,
            )
        )
    session.flush()
    session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": str(last_id + len(pending))})
    touched = [(item.topic, item.payload) for item in pending]
    on_commit(lambda: invalidate_for_events(touched), session)


@event.listens_for(Session, "after_rollback")
def _drop_pending_events(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
