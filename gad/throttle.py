"""Login throttles shared by every worker and machine, kept in PostgreSQL in short transactions of their own.

Two mechanisms, both counted in PostgreSQL so a limit holds for the whole service:

* ``gad.ratelimit_storage.PostgresStorage`` — Flask-Limiter's counter storage when ``REDIS_URL`` is not
  set (``gadpg://``): the per-address login rate limit is then one counter for every worker, not one per
  process. It lives in its own module so that importing this one does not import ``limits``.
* ``reserve_attempt`` / ``record_success`` — the lockout, per e-mail *and* client address (as
  django-axes does with ``[["username", "ip_address"]]``), plus a slow-down of the e-mail across
  every address it never logged in from. Someone else's failures therefore never lock the rightful
  usuario out of the address they log in from, while guessing one account from many addresses is
  still slowed to one try per ``LOGIN_ACCOUNT_SLOWDOWN_SECONDS``.

Every write commits on its own connection, at once: an attempt is counted *before* the password is
checked (so a burst of parallel guesses cannot all pass the check), no row lock is held across the
slow hash, and the error response's rollback cannot undo the count.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.engine import Connection

from gad.extensions import db

# Stale rows (expired windows, addresses not trusted any more) are deleted now and then by the writers.
_PRUNE_PROBABILITY = 0.01


def email_key(email: str) -> str:
    """The throttle key of an e-mail, the same whether or not a usuario has it (no enumeration)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class Verdict(NamedTuple):
    allowed: bool
    retry_after: int  # seconds; 0 when allowed
    attempts: int  # attempts from this address in the current window, this one included


_PAIR_UPSERT = text(
    """
    INSERT INTO login_intentos AS p (email_key, cliente, intentos, ventana_desde)
    VALUES (:k, :c, 1, now())
    ON CONFLICT (email_key, cliente) DO UPDATE SET
        intentos = CASE WHEN p.intentos = 0 OR p.ventana_desde <= now() - make_interval(secs => :window) THEN 1 ELSE p.intentos + 1 END,
        ventana_desde = CASE WHEN p.intentos = 0 OR p.ventana_desde <= now() - make_interval(secs => :window) THEN now() ELSE p.ventana_desde END
    RETURNING intentos, ventana_desde, ultimo_exito, now()
    """
)
# intentos = 0: a success (record_success) since the window began. The next attempt opens a window of its own; kept
# from before the success, the window ran out early, and a lock that followed lasted only what was left of it.
_ACCOUNT_UPSERT = text(
    """
    INSERT INTO login_cuentas AS a (email_key, intentos, ventana_desde)
    VALUES (:k, 1, now())
    ON CONFLICT (email_key) DO UPDATE SET
        intentos = CASE WHEN a.ventana_desde <= now() - make_interval(secs => :window) THEN 1 ELSE a.intentos + 1 END,
        ventana_desde = CASE WHEN a.ventana_desde <= now() - make_interval(secs => :window) THEN now() ELSE a.ventana_desde END
    RETURNING intentos
    """
)
# One try per slow-down interval for the whole account: the UPDATE that moves the slot is the one let through.
_ACCOUNT_SLOT = text(
    """
    UPDATE login_cuentas SET siguiente_intento = now() + make_interval(secs => :slow)
    WHERE email_key = :k AND (siguiente_intento IS NULL OR siguiente_intento <= now())
    RETURNING 1
    """
)
_ACCOUNT_NEXT = text("SELECT siguiente_intento, now() FROM login_cuentas WHERE email_key = :k")


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds()) + 1)


def reserve_attempt(email: str, client: str, config: Any) -> Verdict:
    """Count one login attempt for (e-mail, address) and say whether it may be checked now.

    Refused when this address used up ``LOGIN_MAX_FAILURES`` tries on this e-mail within
    ``LOGIN_LOCKOUT_MINUTES``, or when the e-mail is under attack (more than
    ``LOGIN_ACCOUNT_MAX_FAILURES`` tries from addresses it never logged in from) and this address is
    not one it logged in from within ``LOGIN_TRUSTED_DAYS``.
    """
    key = email_key(email)
    window = config["LOGIN_LOCKOUT_MINUTES"] * 60
    with db.engine.begin() as conn:
        attempts, since, last_success, now = conn.execute(_PAIR_UPSERT, {"k": key, "c": client[:64], "window": window}).one()
        if attempts > config["LOGIN_MAX_FAILURES"]:
            return Verdict(False, _seconds_until(since + timedelta(seconds=window), now), attempts)
        trusted = last_success is not None and last_success > now - timedelta(days=config["LOGIN_TRUSTED_DAYS"])
        if not trusted:
            account_attempts = conn.execute(_ACCOUNT_UPSERT, {"k": key, "window": window}).scalar_one()
            if account_attempts > config["LOGIN_ACCOUNT_MAX_FAILURES"]:
                if conn.execute(_ACCOUNT_SLOT, {"k": key, "slow": config["LOGIN_ACCOUNT_SLOWDOWN_SECONDS"]}).first() is None:
                    next_try, now = conn.execute(_ACCOUNT_NEXT, {"k": key}).one()
                    return Verdict(False, _seconds_until(next_try, now), attempts)
        if random.random() < _PRUNE_PROBABILITY:
            _prune(conn, window, config["LOGIN_TRUSTED_DAYS"])
    return Verdict(True, 0, attempts)


def record_success(email: str, client: str) -> None:
    """The right password from this address: its count restarts and the address becomes trusted."""
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE login_intentos SET intentos = 0, ultimo_exito = now() WHERE email_key = :k AND cliente = :c"),
            {"k": email_key(email), "c": client[:64]},
        )


def _prune(conn: Connection, window_s: int, trusted_days: int) -> None:
    params = {"window": window_s, "trusted": trusted_days * 86400}
    conn.execute(
        text(
            "DELETE FROM login_intentos WHERE ventana_desde < now() - make_interval(secs => :window)"
            " AND (ultimo_exito IS NULL OR ultimo_exito < now() - make_interval(secs => :trusted))"
        ),
        params,
    )
    conn.execute(text("DELETE FROM login_cuentas WHERE ventana_desde < now() - make_interval(secs => :window)"), params)
    conn.execute(text("DELETE FROM limites_contador WHERE expira < now()"))
