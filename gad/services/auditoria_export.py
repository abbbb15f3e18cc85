"""Audit export: a range of the event log as JSON Lines that carries what checking its hash chain needs.

Format (one JSON object per line, UTF-8):
1. header ``{"formato": "gad-auditoria", "version": 1, "desde_id", "prev_hash", "generado_en", ...}``:
   ``prev_hash`` is the hash of the event just before the first one exported (the chain's anchor;
   the genesis value or a pruning anchor when the export starts at the beginning of the stored log).
2. one line per event, ids ascending, with every field the chain covers plus ``prev_hash`` and ``hash``.
3. trailer ``{"fin": true, "eventos": N, "ultimo_id", "ultimo_hash"}``: a truncated file fails.

``verify_lines`` recomputes each hash with the same functions the writer uses (``gad.realtime.chain``:
an HMAC under AUDIT_KEY), so an export is checked exactly as ``flask gad audit verify`` checks the
database, without it — by whoever holds the key; without the key nobody can forge a verifying export.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select

from gad import policy
from gad.db_session import allow_idle_transaction
from gad.extensions import db
from gad.models import AuditoriaAncla, Evento, Usuario, utcnow
from gad.realtime import chain
from gad.vocab import Nivel

FORMATO = "gad-auditoria"
VERSION = 1
BATCH = 2000
MEDIA_TYPE = "application/x-ndjson"


def check_export(actor: Usuario) -> None:
    policy.require_nivel(actor, Nivel.ADMINISTRADOR, "Exporting the audit trail")


def _anchor_before(first_id: int) -> str:
    """The hash the event ``first_id`` must link to, read from the log (or its pruning anchor)."""
    previous = db.session.scalar(select(Evento.hash).where(Evento.id == first_id - 1))
    if previous is not None:
        return str(previous)
    anchor = db.session.scalar(select(AuditoriaAncla).where(AuditoriaAncla.pruned_up_to_id == first_id - 1).order_by(AuditoriaAncla.id.desc()).limit(1))
    if anchor is not None:
        return anchor.last_hash
    return chain.GENESIS


def event_line(event: Any) -> dict[str, Any]:
    """One event as its export line; ``event``: an ``Evento`` or a row of the ``eventos`` table's columns."""
    return {
        "id": event.id,
        "event_type": event.event_type,
        "topic": event.topic,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "actor_id": event.actor_id,
        "request_id": event.request_id,
        "payload": event.payload,
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def export_lines(desde: datetime | None, hasta: datetime | None) -> Iterator[str]:
    """Events created in [desde, hasta) as JSON Lines, streamed in id order through a server-side cursor.

    The range is cut at event ids (first and last event inside it), so the exported stretch is a
    contiguous piece of the chain. Call ``check_export`` first.
    """
    query = select(Evento).order_by(Evento.id)
    if desde is not None:
        query = query.where(Evento.created_at >= desde)
    if hasta is not None:
        query = query.where(Evento.created_at < hasta)
    first_id = db.session.scalar(query.with_only_columns(Evento.id).limit(1))
    last_id = db.session.scalar(query.with_only_columns(Evento.id).order_by(None).order_by(Evento.id.desc()).limit(1))
    header: dict[str, Any] = {
        "formato": FORMATO,
        "version": VERSION,
        "generado_en": utcnow().isoformat(),
        "desde": desde.isoformat() if desde else None,
        "hasta": hasta.isoformat() if hasta else None,
        "desde_id": first_id,
        "hasta_id": last_id,
        "prev_hash": _anchor_before(first_id) if first_id is not None else None,
        "algoritmo": "hash = HMAC-SHA256(AUDIT_KEY, prev_hash || canonical(event)) (gad.realtime.chain)",
        "verificar": "flask --app wsgi gad audit verify-export FICHERO",
    }
    yield _dump(header)
    count, last_hash = 0, header["prev_hash"]
    if first_id is not None and last_id is not None:
        # By id, not by time: ids are the chain's order, and a contiguous id range is what links. Rows, not ORM
        # objects: nothing of what was sent stays in the identity map, so memory stays flat however long the range
        # (emptying the map between batches broke the stream still being read, at the 2,001st event).
        columns = Evento.__table__.c
        allow_idle_transaction()  # between batches the client reads; a slow one must not have the stream cut
        rows = db.session.execute(
            select(*columns).where(columns.id >= first_id, columns.id <= last_id).order_by(columns.id).execution_options(stream_results=True, yield_per=BATCH)
        )
        chunk: list[str] = []
        for event in rows:
            chunk.append(_dump(event_line(event)))
            count, last_hash = count + 1, event.hash
            if len(chunk) >= BATCH:
                yield "".join(chunk)
                chunk = []
        if chunk:
            yield "".join(chunk)
    yield _dump({"fin": True, "eventos": count, "ultimo_id": last_id, "ultimo_hash": last_hash})
    db.session.rollback()


class ExportCheck(NamedTuple):
    ok: bool
    checked: int
    problem: str | None = None
    first_bad_id: int | None = None


def verify_lines(lines: Iterable[str], key: bytes) -> ExportCheck:
    """Check an export offline: header, contiguous ids, each event's link and recomputed hash, trailer."""
    header: dict[str, Any] | None = None
    expected_prev: str | None = None
    expected_id: int | None = None
    checked = 0
    trailer: dict[str, Any] | None = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if trailer is not None:
            return ExportCheck(False, checked, f"line {number}: data after the trailer")
        try:
            obj = json.loads(raw)
        except ValueError:
            return ExportCheck(False, checked, f"line {number}: not JSON")
        if header is None:
            if obj.get("formato") != FORMATO or obj.get("version") != VERSION:
                return ExportCheck(False, checked, f"line {number}: not a {FORMATO} v{VERSION} export header")
            header, expected_prev, expected_id = obj, obj.get("prev_hash"), obj.get("desde_id")
            continue
        if obj.get("fin") is True:
            trailer = obj
            continue
        try:
            event_id = int(obj["id"])
            content = chain.canonical(
                id=event_id,
                event_type=obj["event_type"],
                topic=obj["topic"],
                entity_type=obj["entity_type"],
                entity_id=obj["entity_id"],
                actor_id=obj["actor_id"],
                request_id=obj["request_id"],
                payload=obj["payload"],
                created_at=datetime.fromisoformat(obj["created_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            return ExportCheck(False, checked, f"line {number}: malformed event ({exc})")
        if expected_id is not None and event_id != expected_id:
            return ExportCheck(False, checked, f"event {expected_id} is missing (found {event_id})", expected_id)
        if obj["prev_hash"] != expected_prev:
            return ExportCheck(False, checked, f"event {event_id} does not link to the previous event's hash", event_id)
        if chain.link(key, obj["prev_hash"], content) != obj["hash"]:
            return ExportCheck(False, checked, f"event {event_id} content does not match its hash", event_id)
        expected_prev, expected_id = obj["hash"], event_id + 1
        checked += 1
    if header is None:
        return ExportCheck(False, 0, "empty file: no export header")
    if trailer is None:
        return ExportCheck(False, checked, "no trailer: the export is truncated")
    if trailer.get("eventos") != checked or trailer.get("ultimo_hash") != expected_prev:
        return ExportCheck(False, checked, "the trailer does not match the events (count or last hash)")
    return ExportCheck(True, checked)
