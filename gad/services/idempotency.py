"""Idempotency-Key storage: the first request with a key wins; repeats replay its response."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from gad.errors import ValidationProblem
from gad.extensions import db
from gad.models import IdempotencyKey, utcnow


class StoredResponse(NamedTuple):
    status_code: int
    body: str
    headers: str


def claim(usuario_id: int, key: str, method: str, path: str, request_hash: str) -> StoredResponse | None:
    """Reserve ``key`` for this request, or return the response stored by the request that reserved it.

    The INSERT waits on the unique key while a concurrent request with the same key is in flight, so the
    two never both run the effect: the second sees the first's committed row (or proceeds if it rolled back).
    Raises ValidationProblem when the key was used with a different request.
    """
    ttl = timedelta(hours=current_app.config["IDEMPOTENCY_TTL_HOURS"])
    db.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.usuario_id == usuario_id, IdempotencyKey.key == key, IdempotencyKey.created_at < utcnow() - ttl)
    )
    inserted = db.session.execute(
        insert(IdempotencyKey)
        .values(usuario_id=usuario_id, key=key, method=method, path=path, request_hash=request_hash, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    ).first()
    if inserted is not None:
        return None
    stored = db.session.scalar(select(IdempotencyKey).where(IdempotencyKey.usuario_id == usuario_id, IdempotencyKey.key == key))
    if stored is None or stored.status_code is None:  # pragma: no cover - only if the winner vanished mid-flight
        return None
    if stored.request_hash != request_hash or stored.method != method or stored.path != path:
        raise ValidationProblem(
            "This Idempotency-Key was already used with a different request.",
            errors=[{"field": "header.Idempotency-Key", "message": "reused with a different body or path", "type": "idempotency_mismatch"}],
        )
    return StoredResponse(stored.status_code, stored.response_body or "", stored.response_headers or "{}")


def complete(usuario_id: int, key: str, status_code: int, body: str, headers: str) -> None:
    stored = db.session.get(IdempotencyKey, (usuario_id, key))
    if stored is not None:
        stored.status_code = status_code
        stored.response_body = body
        stored.response_headers = headers
        db.session.flush()


def prune_expired() -> int:
    ttl = timedelta(hours=current_app.config["IDEMPOTENCY_TTL_HOURS"])
    result = db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - ttl))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
