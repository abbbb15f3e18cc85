"""The audit trail: verify the hash chain, prune beyond retention with a re-anchor, query events."""

from __future__ import annotations

import functools
import hmac
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Integer, Select, Text, bindparam, case, cast, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

from gad import policy
from gad.db_session import read_row
from gad.extensions import db
from gad.models import AuditoriaAncla, Evento, Usuario, utcnow
from gad.pg import PreparedShapes
from gad.realtime import chain, events
from gad.schemas.eventos import EventoOut
from gad.services import json_sql
from gad.vocab import Nivel

VERIFY_BATCH = 2000


class VerifyResult(NamedTuple):
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None
    head_id: int | None = None
    head_hash: str | None = None


def _anchor_is_genuine(key: bytes, anchor: AuditoriaAncla) -> bool:
    expected = chain.anchor_mac(
        key,
        pruned_up_to_id=anchor.pruned_up_to_id,
        last_hash=anchor.last_hash,
        pruned_count=anchor.pruned_count,
        actor=anchor.actor,
        created_at=anchor.created_at,
    )
    return hmac.compare_digest(expected, anchor.mac or "")


def verify_chain(expect: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the log in id order from the last pruning anchor; report the first event whose content or link is wrong.

    Every link is a MAC under ``AUDIT_KEY`` and every anchor carries one, so rows deleted, edited or
    re-inserted with the database's credentials alone are reported. ``expect`` is a head recorded
    earlier outside the database (``ID:HASH`` from a previous run): it must still be there, which
    catches a log cut short at its end together with its counter.
    """
    key = chain.current_key()
    anchors = list(db.session.scalars(select(AuditoriaAncla).order_by(AuditoriaAncla.id)))
    for candidate in anchors:
        if not _anchor_is_genuine(key, candidate):
            problem = f"pruning anchor {candidate.id} (up to event {candidate.pruned_up_to_id}) was not written by `flask gad audit prune`"
            return VerifyResult(False, 0, candidate.pruned_up_to_id, problem)
    anchor = anchors[-1] if anchors else None
    expected_prev = anchor.last_hash if anchor else chain.GENESIS
    expected_id: int | None = anchor.pruned_up_to_id + 1 if anchor else 1
    checked = 0
    cursor = anchor.pruned_up_to_id if anchor else 0
    expect_seen = expect is None or (anchor is not None and expect[0] <= anchor.pruned_up_to_id)
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
            if not hmac.compare_digest(chain.link(key, event.prev_hash, content), event.hash):
                return VerifyResult(False, checked, event.id, f"event {event.id} content does not match its hash")
            if expect is not None and event.id == expect[0]:
                if event.hash != expect[1]:
                    return VerifyResult(False, checked, event.id, f"event {event.id} is not the one recorded earlier (its hash differs from the expected head)")
                expect_seen = True
            expected_prev, expected_id, cursor = event.hash, event.id + 1, event.id
            checked += 1
        if len(rows) < VERIFY_BATCH:
            break
    head = events.head(db.session())
    if expected_id is not None and expected_id <= head:
        return VerifyResult(False, checked, expected_id, f"events {expected_id}..{head} are missing from the end of the log")
    if not expect_seen and expect is not None:
        return VerifyResult(False, checked, expect[0], f"event {expect[0]} recorded earlier as the head is gone: the log was cut short")
    return VerifyResult(True, checked, head_id=cursor, head_hash=expected_prev)


def prune(older_than_days: int, actor: str) -> AuditoriaAncla | None:
    """Delete events older than the retention window and re-anchor the chain at the last pruned one.

    The database lets ``DELETE`` past the append-only trigger only in a transaction that presents the
    prune secret derived from ``AUDIT_KEY`` (the trigger keeps its SHA-256); the anchor row records what
    was pruned and by whom under a MAC, so ``verify_chain`` starts from it and from nothing else.
    """
    key = chain.current_key()
    cutoff = utcnow() - timedelta(days=older_than_days)
    last = db.session.scalar(select(Evento).where(Evento.created_at < cutoff).order_by(Evento.id.desc()).limit(1))
    if last is None:
        return None
    db.session.execute(text("SELECT set_config('gad.prune_secret', :secret, true)"), {"secret": chain.prune_secret(key)})
    result = db.session.execute(text("DELETE FROM eventos WHERE id <= :id"), {"id": last.id})
    db.session.execute(text("SELECT set_config('gad.prune_secret', '', true)"))
    pruned_count, created_at = int(result.rowcount or 0), utcnow()  # type: ignore[attr-defined]
    mac = chain.anchor_mac(key, pruned_up_to_id=last.id, last_hash=last.hash, pruned_count=pruned_count, actor=actor, created_at=created_at)
    anchor = AuditoriaAncla(pruned_up_to_id=last.id, last_hash=last.hash, pruned_count=pruned_count, actor=actor, created_at=created_at, mac=mac)
    db.session.add(anchor)
    db.session.flush()
    return anchor


# The optional filters of the audit trail and the column each compares with (a bind parameter of its type).
_FILTERS: dict[str, Any] = {
    "actor_id": Evento.actor_id,
    "entity_type": Evento.entity_type,
    "entity_id": Evento.entity_id,
    "event_type": Evento.event_type,
    "desde": Evento.created_at,
    "hasta": Evento.created_at,
}


def _matching(actor: Usuario, values: dict[str, Any]) -> Select[Any]:
    """The events after the cursor that match the filters present in ``values`` (``_filter_values``), in id
    order. Every value is a named bind parameter: the same filters present give the same SQL."""
    policy.require_nivel(actor, Nivel.ADMINISTRADOR, "Reading the audit trail")

    def bound(name: str) -> Any:
        return bindparam(name, values[name], type_=_FILTERS[name].type if name in _FILTERS else Evento.id.type)

    query: Select[Any] = select(Evento).where(Evento.id > bound("after_id"))
    for name, column in _FILTERS.items():
        if name in values:
            query = query.where(column >= bound(name) if name == "desde" else column < bound(name) if name == "hasta" else column == bound(name))
    return query.order_by(Evento.id)


def _filter_values(filters: dict[str, Any], after_id: int) -> dict[str, Any]:
    """The cursor and the filters that are present, by the name of the bind parameter each becomes."""
    return {"after_id": after_id} | {name: filters[name] for name in _FILTERS if filters.get(name) not in (None, "")}


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
    """Administradores only. Cursor pagination by event id (never by time: ids are the commit order).
    The API answers ``list_events_json``, which tests/test_list_json.py holds equal to this."""
    filters = {"actor_id": actor_id, "entity_type": entity_type, "entity_id": entity_id, "event_type": event_type, "desde": desde, "hasta": hasta}
    query = _matching(actor, _filter_values(filters, after_id))
    items = list(db.session.scalars(query.limit(limit + 1)))
    next_cursor = items[limit - 1].id if len(items) > limit else None
    return items[:limit], next_cursor


@functools.cache
def _event_item() -> ColumnElement[Any]:
    """The list's item, compiled at the first list rather than at every worker's start-up (json_sql.frozen)."""
    return json_sql.frozen(lambda page: json_sql.document(EventoOut, {c.key: c for c in page}), (c.name for c in Evento.__table__.c))


# One prepared page statement per set of filters present (at most 2^6).
_PAGES = PreparedShapes(64)


def list_events_json(
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
) -> str:
    """``list_events`` as EventoPage JSON built by PostgreSQL in one statement: one row past the page says
    whether there is a next one, and then the cursor is the page's last id. Raises Forbidden."""
    policy.require_nivel(actor, Nivel.ADMINISTRADOR, "Reading the audit trail")  # on every call: the statement may be built already
    filters = {"actor_id": actor_id, "entity_type": entity_type, "entity_id": entity_id, "event_type": event_type, "desde": desde, "hasta": hasta}
    values = _filter_values(filters, after_id)

    def build() -> Any:
        size = bindparam("limit", limit, type_=Integer)
        page = (
            _matching(actor, values)
            .add_columns(func.row_number().over(order_by=Evento.id).label("_rn"))
            .limit(cast(size, Integer) + literal_column("1"))  # typed: PostgreSQL cannot add two untyped parameters
            .subquery(json_sql.PAGE)
        )
        within = page.c._rn <= size
        items = func.coalesce(func.json_agg(aggregate_order_by(_event_item(), page.c._rn)).filter(within), json_sql.EMPTY_ARRAY)
        next_cursor = case((func.count() > size, func.max(page.c.id).filter(within)))
        body = func.json_build_object(json_sql.key("items"), items, json_sql.key("next_cursor"), next_cursor)
        return select(cast(body, Text)).select_from(page)

    row = read_row(_PAGES.get(tuple(values), build), values | {"limit": limit})
    assert row is not None  # an aggregate: always one row
    return str(row[0])


# How far back the board's "Últimos eventos" looks for events its viewer may see (bounded work per page load).
RECENT_SCAN = 2000


def recent_events(actor: Usuario, limit: int) -> list[Evento]:
    """The newest ``limit`` events this usuario may have now, newest first: those a websocket replay would hand
    over (``replay.readable_now``: visible when written *and* the resource readable today), so an officer taken
    off a tarea no longer sees its history here either, as REST then answers 403."""
    from gad.services import replay  # replay reads tareas through tarea_queries, which the audit queries do not need

    topics = policy.visible_topics(actor)
    rows = db.session.scalars(select(Evento).where(Evento.topic.in_(sorted(topics))).order_by(Evento.id.desc()).limit(RECENT_SCAN))
    live = [event for event in rows if policy.can_see_event(actor, event.topic, event.payload)]
    return replay.readable_now(actor, live)[:limit]
