"""Flask-Limiter's counters in PostgreSQL (``gadpg://``), loaded when the login limiter is first bound (gad.ratelimit)."""

from __future__ import annotations

import random

from limits.storage import Storage
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gad.extensions import db
from gad.models import utcnow

# Stale rows (expired windows) are deleted now and then by the writers.
_PRUNE_PROBABILITY = 0.01


class PostgresStorage(Storage):
    """Fixed-window counters for Flask-Limiter in ``limites_contador`` (``RATELIMIT_STORAGE_URI=gadpg://``).

    Used only inside requests (it borrows the app's pooled engine); each call is its own short
    transaction, so a count survives the request's rollback and is seen by every worker at once.
    """

    STORAGE_SCHEME = ["gadpg"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with db.engine.begin() as conn:
            count = conn.execute(
                text(
                    """
                    INSERT INTO limites_contador AS l (clave, cuenta, expira)
                    VALUES (:k, :n, now() + make_interval(secs => :e))
                    ON CONFLICT (clave) DO UPDATE SET
                        cuenta = CASE WHEN l.expira <= now() THEN EXCLUDED.cuenta ELSE l.cuenta + EXCLUDED.cuenta END,
                        expira = CASE WHEN l.expira <= now() THEN EXCLUDED.expira ELSE l.expira END
                    RETURNING cuenta
                    """
                ),
                {"k": key[:255], "n": amount, "e": expiry},
            ).scalar_one()
            if random.random() < _PRUNE_PROBABILITY:
                conn.execute(text("DELETE FROM limites_contador WHERE expira < now()"))
        return int(count)

    def get(self, key: str) -> int:
        with db.engine.connect() as conn:
            value = conn.execute(text("SELECT cuenta FROM limites_contador WHERE clave = :k AND expira > now()"), {"k": key[:255]}).scalar()
        return int(value or 0)

    def get_expiry(self, key: str) -> float:
        with db.engine.connect() as conn:
            value = conn.execute(text("SELECT expira FROM limites_contador WHERE clave = :k"), {"k": key[:255]}).scalar()
        return value.timestamp() if value is not None else utcnow().timestamp()

    def check(self) -> bool:
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with db.engine.begin() as conn:
            return int(conn.execute(text("DELETE FROM limites_contador")).rowcount or 0)

    def clear(self, key: str) -> None:
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM limites_contador WHERE clave = :k"), {"k": key[:255]})
