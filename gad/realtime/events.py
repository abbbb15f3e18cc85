"""Event log publisher: every committed change appends to ``eventos`` in the same transaction.

Ordering mechanism (docs/ARCHITECTURE.md §3): ids are not taken from a sequence, because a sequence hands out ids at
insert time and a slow transaction can commit id 7 after a fast one committed id 8 — a reader that saw 8
would then skip 7 for ever; and a rolled-back transaction would leave a hole. Instead, pending events
are written at *commit time* (SQLAlchemy ``before_commit``): the transaction locks the single row of
``eventos_contador`` (``SELECT ... FOR UPDATE``) until commit or rollback, numbers its events from the
``last_id`` it read, and writes the new ``last_id`` and chain head with the events (one UPDATE). So
transactions that write events commit one at a time in id order, a rollback gives its ids back, and
the counter keeps increasing even after old events are pruned. The lock is held only for the last
moments of a transaction. A writer whose last statement makes the change an event reports (a create) may take
the ids in that statement instead (``TAKE_ONE_ID_CTE``, ``took_ids``), saving the round trip, and at a request's
commit the append carries the COMMIT (``_append``), so the row is held for one round trip less. ``NOTIFY`` is
issued in the same transaction, so PostgreSQL delivers it only on commit; its payload names the new head id and
the topics, which is all a worker's listener reads when no socket is open (``gad.realtime.hub``).
"""

from __future__ import annotations

import json
import logging
import math
from decimal import Decimal
from typing import Any, NamedTuple

from flask import has_request_context
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from gad import metrics
from gad.db_session import on_commit
from gad.models import utcnow
from gad.observability import current_request_id
from gad.pg import Prepared
from gad.principal_cache import principals
from gad.realtime import chain, tallies
from gad.schemas.events import EventPayload, LoginFailed, PermissionDenied, SecurityEvent

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "gad_eventos"
_PENDING_KEY = "gad_pending_events"
_TAKEN_KEY = "gad_taken_event_ids"

SECURITY_TOPIC = "seguridad"


class PendingEvent(NamedTuple):
    """An event queued in the session until its transaction commits (a record: a dataclass execs its generated
    methods at every worker's import, docs/ARCHITECTURE.md §5 "Start-up")."""

    event_type: str
    topic: str
    entity_type: str
    entity_id: int | None
    actor_id: int | None
    payload: dict[str, Any]
    request_id: str | None


def record(session: Session, payload: EventPayload, *, topic: str, entity_type: str, entity_id: int | None, actor_id: int | None) -> None:
    """Queue an event for the current transaction; it is written at commit, or dropped with a rollback.

    The event type and the shape of its data are ``payload``'s class (``gad.schemas.events``).
    """
    record_data(session, payload.event_type, payload.to_json(), topic=topic, entity_type=entity_type, entity_id=entity_id, actor_id=actor_id)


def record_data(session: Session, event_type: str, data: dict[str, Any], *, topic: str, entity_type: str, entity_id: int | None, actor_id: int | None) -> None:
    """``record`` for a payload already as its class's ``to_json`` gives it, for a writer that builds it without the
    model (a test must hold the two equal: ``gad.services.tarea_events.record_summary``)."""
    _queue(session, PendingEvent(event_type, topic, entity_type, entity_id, actor_id, data, current_request_id()))


def _queue(session: Session, pending: PendingEvent) -> None:
    session.info.setdefault(_PENDING_KEY, []).append(pending)


def record_security(payload: SecurityEvent, actor_id: int | None) -> None:
    """Security events (logins, lockouts, denials) share the log but only administradores may see them.

    The event type and the shape of its data are ``payload``'s class (``gad.schemas.events``, security section).
    Failed logins and denials repeat at an attacker's will: they are folded per source and window
    (``gad.realtime.tallies``), so only the first of a burst is an event and the rest become its count.
    """
    from flask import current_app

    from gad.extensions import db

    session = db.session()
    window_s = int(current_app.config["SECURITY_EVENT_WINDOW_S"])
    if window_s > 0:
        for summary in tallies.close_expired(session):
            _queue(session, PendingEvent(summary.event_type, SECURITY_TOPIC, "usuario", summary.actor_id, None, summary.to_json(), current_request_id()))
        folded = _tally_key(actor_id, payload)
        if folded is not None:
            source, sample = folded
            occurrence = tallies.count(session, kind=payload.event_type, source=source, actor_id=actor_id, sample=sample, window_s=window_s)
            if not occurrence.first:
                return
            payload = payload.model_copy(update={"aggregated_until": occurrence.window_end.isoformat()})
    _queue(session, PendingEvent(payload.event_type, SECURITY_TOPIC, "usuario", actor_id, actor_id, payload.to_json(), current_request_id()))


def _tally_key(actor_id: int | None, payload: SecurityEvent) -> tuple[str, str] | None:
    """The source a folded kind is counted per, and the sample it keeps; None: this kind is never folded."""
    if isinstance(payload, LoginFailed):
        # One source per client address and account tried (unknown e-mails together): a lockout of a known
        # account stays visible per account, guessing unknown ones stays one row per address.
        return f"client {payload.client} usuario {actor_id if actor_id is not None else '-'}", payload.email or ""
    if isinstance(payload, PermissionDenied):
        return f"usuario {actor_id}", f"{payload.method} {payload.path}".strip()
    return None


# A CTE a writer may put in the statement that makes its change, taking that change's one event id there instead
# of in a statement of its own at commit (``took_ids``). ``{source}`` names a CTE of the same statement: the id
# is taken only if it produced a row, and only after it did (the EXISTS needs its result first), so a change
# that waits on another transaction's row never holds the counter while it waits. It locks the counter's row
# and reads it (the next id, the chain head) without writing it: the append writes the new last_id and head in
# its one UPDATE. Under READ COMMITTED a FOR UPDATE that waited reads the row as its holder committed it, as an
# UPDATE would have, so ids stay gapless and in commit order.
TAKE_ONE_ID_CTE = "SELECT last_id + 1 AS last_id, last_hash FROM eventos_contador WHERE id = 1 AND EXISTS (SELECT FROM {source}) FOR UPDATE"


def took_ids(session: Session, last_id: int, last_hash: str, count: int) -> None:
    """A statement of this transaction took ``count`` event ids itself (``TAKE_ONE_ID_CTE``), the last of them
    ``last_id``: the counter's row is locked until this transaction ends, so the events queued by commit take
    the ids from ``last_id - count + 1`` on without another round trip. For the last change of a transaction
    only: from here to its commit, every other writer of events waits (a write that then waited on a row lock
    could deadlock). Not inside a SAVEPOINT: a rolled-back savepoint would release the lock behind this
    record's back."""
    session.info[_TAKEN_KEY] = (last_id - count, last_hash, count)


def head(session: Session) -> int:
    """The id of the last event committed (0 before the first): a client that read state after this resumes from
    it and misses nothing committed since (a page renders it for its first connection, ``live.js``)."""
    return int(session.scalar(text("SELECT last_id FROM eventos_contador WHERE id = 1")) or 0)


@event.listens_for(Session, "before_commit")
def _write_pending_events(session: Session) -> None:
    pending: list[PendingEvent] = session.info.pop(_PENDING_KEY, [])
    taken: tuple[int, str, int] | None = session.info.pop(_TAKEN_KEY, None)
    if not pending and taken is None:
        return
    session.flush()
    if taken is None:
        row = _TAKE_SQL.first(session.connection(), {})
        if row is None:
            raise RuntimeError("eventos_contador is empty: run `flask db upgrade`")
        last_id, prev_hash = int(row[0]), str(row[1])
    else:
        # However many ids the statement took, the counter was only locked: the events queued are numbered on from
        # where it stood, and the append sets it to the last of them (none queued: it never moved).
        last_id, prev_hash, _ = taken
        if not pending:
            return
    now = utcnow()
    key = chain.current_key()
    rows = []
    for offset, item in enumerate(pending, start=1):
        fields: dict[str, Any] = {
            "id": last_id + offset,
            "event_type": item.event_type,
            "topic": item.topic,
            "entity_type": item.entity_type,
            "entity_id": item.entity_id,
            "actor_id": item.actor_id,
            "request_id": item.request_id,
            "payload": item.payload if _is_plain(item.payload) else _jsonable(item.payload),
            "created_at": now,
        }
        text = chain.canonical_text(**fields)
        digest = chain.link(key, prev_hash, text.encode())
        # The row as jsonb_to_recordset reads it: the canonical object (the same values, created_at in UTC) with
        # the chain's two columns; serialising the event a second time only to send it cost as much as the first.
        rows.append(f'{text[:-1]},"prev_hash":"{prev_hash}","hash":"{digest}"}}')
        prev_hash = digest
    # The rows, the new head of the chain and the notification in one round trip. The notification is
    # delivered only if this commits; PostgreSQL runs a data-modifying WITH to completion even unread.
    # Plain SQL rather than ORM objects: nothing reads these rows back in this transaction, and the unit
    # of work for them cost more than the statement.
    # The notification names the new head and the topics (gad.realtime.hub._skip_unwatched).
    topics = {item.topic for item in pending}
    notice = f"{last_id + len(pending)} {','.join(sorted(topics))}"
    _append(session, {"rows": f"[{','.join(rows)}]", "last": last_id + len(pending), "h": prev_hash, "channel": NOTIFY_CHANNEL, "payload": notice})
    # This process must not serve a revoked token even before its listener hears of the commit.
    on_commit(lambda: principals.invalidate_for_topics(topics), session)
    on_commit(lambda: metrics.EVENTS_WRITTEN.inc(len(pending)), session)


# Both prepared once per connection (gad.pg.Prepared): every write of the service runs them.
_TAKE_SQL = Prepared(text("SELECT last_id, last_hash FROM eventos_contador WHERE id = 1 FOR UPDATE"))
_APPEND_SQL = Prepared(
    text(
        """
    WITH appended AS (
        INSERT INTO eventos (id, event_type, topic, entity_type, entity_id, actor_id, request_id, payload, created_at, prev_hash, hash)
        SELECT id, event_type, topic, entity_type, entity_id, actor_id, request_id, payload, created_at, prev_hash, hash
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
            id bigint, event_type text, topic text, entity_type text, entity_id bigint, actor_id integer, request_id text,
            payload jsonb, created_at timestamptz, prev_hash text, hash text)
        RETURNING 1
    )
    UPDATE eventos_contador SET last_id = :last, last_hash = :h WHERE id = 1
    RETURNING pg_notify(:channel, :payload)
    """
    )
)


def _append(session: Session, params: dict[str, Any]) -> None:
    """The append, and at a request's commit the COMMIT with it in one round trip.

    From the statement that takes the counter to COMMIT every other writer of events waits: sending the append
    and the COMMIT apart kept the counter's row locked for a round trip more, plus the wait for this greenlet's
    next turn, which under load capped creates below the worker's CPU (measured: docs/BENCHMARKS.md). The
    statement ends ``; COMMIT``: PostgreSQL commits there, and SQLAlchemy's own commit that follows sends
    nothing, since the server reports no transaction open (``gad.pg.install_begin_with_first_statement``). On a
    connection where psycopg2 runs its own transaction (not in autocommit) it ends ``; COMMIT; BEGIN`` instead:
    psycopg2 will send its COMMIT regardless, and it then ends an empty transaction. Only at the outermost commit
    of a request's session, in a transaction: a savepoint's release (its ``before_commit`` runs this too) must
    not commit the transaction around it. After this hook nothing else is written: the session was flushed
    before it and no other ``before_commit`` listener writes."""
    connection = session.connection()
    dbapi_connection = connection.connection.dbapi_connection
    then = ""
    if has_request_context() and not session.in_nested_transaction() and dbapi_connection is not None:
        if not dbapi_connection.autocommit:
            then = "COMMIT; BEGIN"
        elif connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            then = "COMMIT"
    _APPEND_SQL.run(connection, params, then=then)


_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})
# From here on Python writes a float with an exponent (1e+16), and JSONB hands it back written out, an integer.
_WRITTEN_OUT = 1e16


def _is_plain(value: Any) -> bool:
    """Whether ``value`` is already what ``_jsonable`` gives back (str keys, JSON's own types, no tuples, enums or
    other subclasses, no float JSONB changes), so it would return an equal value."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is float:
        return abs(value) < _WRITTEN_OUT and (value != 0 or math.copysign(1.0, value) > 0)
    # A scalar item is judged here, without a call of its own: an event's payload is mostly scalars.
    if kind is dict:
        return all(type(key) is str and (type(item) in _PLAIN_SCALARS or _is_plain(item)) for key, item in value.items())
    if kind is list:
        return all(type(item) in _PLAIN_SCALARS or _is_plain(item) for item in value)
    return False


def _jsonable(payload: dict[str, Any]) -> Any:
    """The payload exactly as JSONB will hand it back, so the hash verifies after a round trip."""
    return json.loads(json.dumps(payload, default=str), parse_float=_as_jsonb_gives_back)


def _as_jsonb_gives_back(number: str) -> float | int:
    """A JSON float as JSONB's numeric returns it: without a negative zero (a position at -0.0, which any officer can
    send, left an event whose hash no longer matched its row, and ``audit verify`` reported the log altered), and
    from 1e16 on written out, which JSON reads as an integer."""
    value = float(number)
    if abs(value) >= _WRITTEN_OUT:
        return int(Decimal(number))
    return value if value != 0 else 0.0


@event.listens_for(Session, "after_rollback")
def _drop_pending_events(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
    session.info.pop(_TAKEN_KEY, None)
