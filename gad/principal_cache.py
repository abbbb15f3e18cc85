"""Recently verified tokens, so a read does not pay a database round trip just to learn who is asking.

Checking a token against PostgreSQL (usuario active, token version, logout list) costs a query on every
request; on a GET of one tarea that was a third of the worker's time. Here a process remembers, per
token string, the claims its signature carried and the usuario it was verified for — so a reuse
skips both the query and the signature check — but only under three conditions that keep
revocation honest:

* only **safe requests** (GET/HEAD, websocket handshakes) may use an entry as it is; every write re-verifies
  against the database — a create or a position in its own statement, the writes that lock a tarea or an efectivo
  in that lock (``auth.CallerCheck``, ``auth.CallerCheckedLock``), any other write with a read first — so a role
  change or logout always holds for writes at once;
* only while this process's **event listener is connected** (``gad.realtime.hub``): every change to a
  usuario and every security event (logout, token revocation, role change, deactivation) writes an
  event in the same transaction, and when any such event reaches the listener — from any worker or
  machine — the whole cache is dropped. On this process's own commits it is dropped at once;
  elsewhere within the listener's delay (milliseconds). While the listener is down, or when it
  reconnects, nothing is served from here;
* an entry lives at most ``AUTH_CACHE_SECONDS`` (and never past the token's own expiry).

A fill that raced with an invalidation is discarded (the generation check), so a usuario read before a
revocation committed can never be cached after it.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from gad import metrics

MAX_ENTRIES = 10_000
INVALIDATING_TOPICS = frozenset({"usuarios", "seguridad"})


class Entry(NamedTuple):
    principal: Any  # what the verification established (the usuario's column values and the claims)
    valid_until: float  # time.monotonic(); never past the token's own expiry


class PrincipalCache:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self.generation = 0
        self.listener_connected = False

    def usable(self, ttl_s: float) -> bool:
        return ttl_s > 0 and self.listener_connected

    def get(self, token: str) -> Any:
        """The principal verified for exactly this token string (signature included), or None."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry.valid_until < time.monotonic():
            self._entries.pop(token, None)
            return None
        metrics.AUTH_CACHE_HITS.inc()
        return entry.principal

    def put(self, token: str, principal: Any, seconds: float, generation: int) -> None:
        """Remember a verification that started at ``generation``; dropped if anything was invalidated since."""
        if generation != self.generation or not self.listener_connected:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[token] = Entry(principal, time.monotonic() + seconds)

    def discard(self, token: str) -> None:
        """Forget one token's verification: a write found it no longer holds."""
        self._entries.pop(token, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def invalidate_for_topics(self, topics: set[str]) -> None:
        if topics & INVALIDATING_TOPICS:
            self.clear()

    def set_listener_connected(self, connected: bool) -> None:
        # Events may have been missed while disconnected: nothing cached before is trusted afterwards.
        self.clear()
        self.listener_connected = connected

    def __len__(self) -> int:
        return len(self._entries)


principals = PrincipalCache()
