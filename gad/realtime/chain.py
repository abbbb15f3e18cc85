"""Tamper evidence for the event log: each event's MAC covers its canonical content and the previous MAC.

``hash_n = HMAC-SHA256(AUDIT_KEY, prev_hash_n || canonical(event_n))`` with ``prev_hash_n = hash_{n-1}``.
Editing any field of a stored event changes its hash; deleting one breaks the link of the next. The key
lives in the service's environment, never in the database: whoever holds only the database credentials
can delete and re-insert rows, but cannot compute links that verify. Pruning anchors carry a MAC under
the same key, and the database lets rows be deleted only by a transaction that presents the prune
secret derived from it (the trigger stores a SHA-256 of that secret, not the secret).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from gad.reqctx import current_flask_app

GENESIS = "0" * 64
# json.dumps with these options builds a JSONEncoder on every call; one instance encodes the same bytes.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical(**fields: Any) -> bytes:
    """A byte string that any reader reconstructs identically from the stored row (sorted keys, UTC time): the
    UTF-8 of ``canonical_text``, whose keywords it takes."""
    return canonical_text(**fields).encode()


def canonical_text(
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
) -> str:
    """The event as a JSON object (sorted keys, UTC time), which a writer may also send as the row itself."""
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
    return _CANONICAL.encode(document)


def link(key: bytes, prev_hash: str, content: bytes) -> str:
    mac = _keyed(key).copy()
    mac.update(prev_hash.encode())
    mac.update(content)
    return mac.hexdigest()


@functools.lru_cache(maxsize=4)
def _keyed(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 keyed with ``key``, copied for each link. OpenSSL's one-shot HMAC looks the algorithm up and
    sets the key up on every call, and inside a create, with its caches cold, that took 25-40 µs of the ~1.5 ms
    of CPU a create costs, while the counter's row was locked; a copy of the keyed state takes about half
    (docs/BENCHMARKS.md, issue 18)."""
    return hmac.new(key, digestmod="sha256")


def anchor_mac(key: bytes, *, pruned_up_to_id: int, last_hash: str, pruned_count: int, actor: str | None, created_at: datetime) -> str:
    """The MAC of a pruning anchor: a forged anchor would otherwise let verification skip any prefix."""
    content = json.dumps(
        [pruned_up_to_id, last_hash, pruned_count, actor, created_at.astimezone(UTC).isoformat(timespec="microseconds")], separators=(",", ":")
    )
    return hmac.new(key, b"anchor:" + content.encode(), hashlib.sha256).hexdigest()


def prune_secret(key: bytes) -> str:
    """What a pruning transaction sets in ``gad.prune_secret``; derived from the key, so only its holder knows it."""
    return hmac.new(key, b"gad-audit-prune", hashlib.sha256).hexdigest()


def prune_secret_digest(key: bytes) -> str:
    """The SHA-256 of the prune secret, the only form of it the database stores (in the trigger)."""
    return hashlib.sha256(prune_secret(key).encode()).hexdigest()


def current_key() -> bytes:
    """The running app's audit key (``AUDIT_KEY``)."""
    return str(current_flask_app().config["AUDIT_KEY"]).encode()
