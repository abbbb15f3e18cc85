"""The whole cache surface in one file: the backend wiring, key builders and the read-through helper.

Never stale after a write, on any worker: every entry is stamped with the id of the newest event in
the event log when it was computed, and is served only while no newer event exists (one primary-key
lookup of the event counter). Every committed change writes an event, so a write committed on another
worker — or another machine — makes the entry stale at once, even with the per-process cache. That
stamp is the invalidation: writers never touch the cache. Deleting the keys a write touched only freed
a few entries (one summary, three per usuario) a minute early, and cost every write a Redis round trip
after its commit — half a second of connect timeout for each while Redis was unreachable. A stale entry
is replaced by the next read that computes it, or expires after ``CACHE_DEFAULT_TIMEOUT``. If Redis is
unreachable the service answers from the database and logs the degradation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import select

from gad.extensions import cache, db
from gad.models import EventoContador

logger = logging.getLogger(__name__)
T = TypeVar("T")

STATS_DAYS_CACHED = (7, 30, 90)
_stats = {"hits": 0, "misses": 0, "errors": 0}
_last_degradation_log = 0.0


def init_app(app: Flask) -> None:
    """Flask-Caching backend: Redis when REDIS_URL is set (with our own key prefix), in-process otherwise."""
    redis_url = app.config.get("REDIS_URL")
    if redis_url:
        config = {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": redis_url,
            # A non-empty prefix: clearing our cache must never wipe a shared Redis database.
            "CACHE_KEY_PREFIX": app.config["CACHE_KEY_PREFIX"],
            "CACHE_OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
            "CACHE_DEFAULT_TIMEOUT": app.config["CACHE_DEFAULT_TIMEOUT"],
        }
    else:
        config = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": app.config["CACHE_DEFAULT_TIMEOUT"], "CACHE_THRESHOLD": 1000}
    cache.init_app(app, config=config)


def resumen_key() -> str:
    return "dashboard:resumen"


def user_stats_key(usuario_id: int, days: int) -> str:
    return f"stats:user:{usuario_id}:{days}"


def _degraded(operation: str, exc: Exception) -> None:
    global _last_degradation_log
    _stats["errors"] += 1
    now = time.monotonic()
    if now - _last_degradation_log > 30:  # one line per 30 s, not one per request
        _last_degradation_log = now
        logger.warning("cache unavailable during %s, answering from the database: %s", operation, exc)


def _get(key: str) -> Any:
    try:
        return cache.get(key)
    except Exception as exc:  # noqa: BLE001 - any backend failure degrades to the database
        _degraded("get", exc)
        return None


def _set(key: str, value: Any) -> None:
    try:
        cache.set(key, value)
    except Exception as exc:  # noqa: BLE001 - any backend failure degrades to the database
        _degraded("set", exc)


def head_event_id() -> int:
    """The last event id handed out by a committed transaction (monotonic, even across pruning)."""
    return int(db.session.scalar(select(EventoContador.last_id).where(EventoContador.id == 1)) or 0)


def cached(key: str, compute: Callable[[], T]) -> T:
    """Serve ``key`` if it was computed at or after the newest committed event, else recompute and store."""
    head = head_event_id()
    entry = _get(key)
    if isinstance(entry, dict) and entry.get("head", -1) >= head:
        _stats["hits"] += 1
        return entry["value"]
    _stats["misses"] += 1
    value = compute()
    _set(key, {"head": head, "value": value})
    return value


def clear_all() -> None:
    """Admin: drop every GAD key (Redis: only keys under our prefix; never the whole database)."""
    cache.clear()


def stats() -> dict[str, Any]:
    backend = type(cache.cache).__name__ if hasattr(cache, "cache") else "none"
    return {"backend": backend, **_stats}
