"""Tamper evidence for the event log: each event's hash covers its canonical content and the previous hash.

``hash_n = sha256(prev_hash_n || canonical(event_n))`` with ``prev_hash_n = hash_{n-1}``. Editing any
field of a stored event changes its hash; deleting one breaks the link of the next. Verification walks
the log in id order from the last pruning anchor.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def canonical(
    *,
    id: int,
    event_type: str,
    topic: str,
    entity_type: str,
    entity_id: int | None,
    actor_id: int | None,
    request_id: str | None,
    payload: Any,
    created_at: datetime,
) -> bytes:
    """A byte string that any reader reconstructs identically from the stored row (sorted keys, UTC time)."""
    document = {
        "id": id,
        "event_type": event_type,
        "topic": topic,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "actor_id": actor_id,
        "request_id": request_id,
        "payload": payload,
        "created_at": created_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def link(prev_hash: str, content: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + content).hexdigest()
