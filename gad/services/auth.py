"""Passwords, login with lockout, JWT access tokens and their revocation."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from sqlalchemy import bindparam, delete, func, inspect, select
from sqlalchemy.orm import make_transient_to_detached

from gad import metrics
from gad.errors import Locked, Unauthorized, ValidationProblem
from gad.extensions import db
from gad.models import TokenRevocado, Usuario, utcnow
from gad.principal_cache import principals
from gad.realtime import events

logger = logging.getLogger(__name__)

# argon2id, 64 MiB, t=3, one lane (RFC 9106 memory with a single lane): a verification occupies
# exactly one core and never fans out into extra threads that would starve the gevent hub.
_hasher = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)
_hash_pool: Any = None
JWT_ALGORITHM = "HS256"
GENERIC_LOGIN_FAILURE = "Invalid e-mail or password."


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verifying against this hash when the e-mail is unknown keeps response time independent of whether it
    # exists. Built on first use, not at import: argon2 with 64 MiB would slow every worker's start-up.
    return _hasher.hash("not-a-real-password-for-timing")


def _lower_thread_priority() -> None:
    # Linux allows a per-thread nice value: hashing yields the CPU to the hub whenever the hub has work.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        pass


def _off_hub(func: Any, *args: Any) -> Any:
    """Run CPU-bound hashing on a dedicated low-priority native thread when under gevent.

    argon2-cffi releases the GIL while hashing, so the thread runs in parallel with the hub; a pool of
    PASSWORD_HASH_THREADS (default 1) bounds how many cores a login storm can take from everything else,
    and the greenlet waiting for its turn costs nothing.
    """
    global _hash_pool
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        return func(*args)
    if _hash_pool is None:
        from gevent.threadpool import ThreadPool

        size = int(current_app.config.get("PASSWORD_HASH_THREADS", 1)) if current_app else 1
        _hash_pool = ThreadPool(size)

    def run() -> Any:
        _lower_thread_priority()
        return func(*args)

    return _hash_pool.apply(run)


def hash_password(password: str) -> str:
    return str(_off_hub(_hasher.hash, password))


def verify_password(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return bool(_hasher.verify(password_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return bool(_off_hub(check))


def check_password_policy(password: str, email: str | None, field: str = "password") -> None:
    """Raise ValidationProblem when the password is too short or equals the e-mail."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        raise ValidationProblem(
            "Password too weak.",
            errors=[{"field": f"body.{field}", "message": f"must have at least {minimum} characters", "type": "password_policy"}],
        )
    if email and password.strip().lower() == email.strip().lower():
        raise ValidationProblem(
            "Password too weak.",
            errors=[{"field": f"body.{field}", "message": "must not be the e-mail address", "type": "password_policy"}],
        )


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    jti: str


def issue_token(usuario: Usuario) -> IssuedToken:
    minutes = current_app.config["ACCESS_TOKEN_EXPIRE_MINUTES"]
    now = utcnow()
    jti = secrets.token_hex(16)
    claims = {
        "sub": str(usuario.id),
        "nivel": usuario.nivel,
        "tv": usuario.token_version,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=minutes)).timestamp()),
        "jti": jti,
    }
    token = jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=JWT_ALGORITHM)
    return IssuedToken(access_token=token, expires_in=minutes * 60, jti=jti)


def decode_token(token: str) -> dict[str, Any]:
    """Verify signature and expiry; ``exp``, ``sub``, ``jti`` and ``tv`` are mandatory. Raises Unauthorized."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "iat", "sub", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired; log in again.") from None
    except jwt.PyJWTError:
        raise Unauthorized("The token is invalid.") from None
    if "tv" not in claims:
        raise Unauthorized("The token is invalid.")
    return claims


# Built once: constructing the statement on every request cost more than running it.
_PRINCIPAL = select(
    Usuario,
    select(TokenRevocado.jti).where(TokenRevocado.jti == bindparam("jti")).exists(),
).where(Usuario.id == bindparam("usuario_id"))


def authenticate_token(token: str, *, read_only: bool = False) -> tuple[Usuario, dict[str, Any]]:
    """The active usuario a token speaks for. Raises Unauthorized if revoked, stale or the user is inactive.

    ``read_only`` requests may reuse a recent verification of the same token (see principal_cache).
    """
    ttl_s = current_app.config["AUTH_CACHE_SECONDS"]
    reuse = read_only and principals.usable(ttl_s)
    if reuse and (known := principals.get(token)) is not None:
        values, claims = known
        return _attach(values), claims
    generation = principals.generation
    claims = decode_token(token)
    try:
        usuario_id = int(claims["sub"])
    except (TypeError, ValueError):
        raise Unauthorized("The token is invalid.") from None
    # One round trip: the usuario and whether this token was logged out.
    row = db.session.execute(_PRINCIPAL, {"jti": str(claims["jti"]), "usuario_id": usuario_id}).first()
    if row is None or row[1]:
        raise Unauthorized("The token has been revoked; log in again.")
    usuario = row[0]
    if not usuario.activo or claims.get("tv") != usuario.token_version:
        raise Unauthorized("The token has been revoked; log in again.")
    if reuse:
        seconds = min(ttl_s, int(claims["exp"]) - time.time())  # never past the token's expiry
        principals.put(token, ({c.key: getattr(usuario, c.key) for c in _USUARIO_COLUMNS}, claims), seconds, generation)
    return usuario, claims


_USUARIO_COLUMNS = tuple(inspect(Usuario).column_attrs)


def _attach(values: dict[str, Any]) -> Usuario:
    """A Usuario in this request's session built from verified values, as if just loaded (no SQL)."""
    usuario = Usuario(**values)
    make_transient_to_detached(usuario)
    key = inspect(usuario).key
    already = db.session.identity_map.get(key) if key is not None else None
    if already is not None:
        return already  # type: ignore[no-any-return]
    db.session.add(usuario)
    return usuario


def find_by_email(email: str) -> Usuario | None:
    return db.session.scalar(select(Usuario).where(func.lower(Usuario.email) == email.strip().lower()))


def login(email: str, password: str, client_address: str) -> tuple[Usuario, IssuedToken]:
    """Check credentials with lockout after repeated failures.

    Raises Unauthorized (one generic message for every failure) or Locked (with Retry-After).
    Failure counters are flushed, so the caller must commit even when this raises.
    """
    usuario = find_by_email(email)
    now = utcnow()
    if usuario is not None and usuario.bloqueado_hasta is not None and usuario.bloqueado_hasta > now:
        retry_after = int((usuario.bloqueado_hasta - now).total_seconds()) + 1
        raise Locked(
            "Too many failed logins; the account is temporarily locked.",
            headers={"Retry-After": str(retry_after)},
        )
    if usuario is None:
        verify_password(_dummy_hash(), password)
        events.record_security("login_failed", None, {"email": email.strip().lower()[:254], "client": client_address})
        metrics.LOGIN_FAILURES.inc()
        raise Unauthorized(GENERIC_LOGIN_FAILURE)
    if not verify_password(usuario.password_hash, password) or not usuario.activo:
        usuario.intentos_fallidos += 1
        payload: dict[str, Any] = {"client": client_address, "intentos": usuario.intentos_fallidos}
        if usuario.intentos_fallidos >= current_app.config["LOGIN_MAX_FAILURES"]:
            usuario.bloqueado_hasta = now + timedelta(minutes=current_app.config["LOGIN_LOCKOUT_MINUTES"])
            usuario.intentos_fallidos = 0
            events.record_security("account_locked", usuario.id, payload)
        events.record_security("login_failed", usuario.id, payload)
        metrics.LOGIN_FAILURES.inc()
        db.session.flush()
        raise Unauthorized(GENERIC_LOGIN_FAILURE)
    usuario.intentos_fallidos = 0
    usuario.bloqueado_hasta = None
    usuario.ultimo_acceso = now
    events.record_security("login", usuario.id, {"client": client_address})
    db.session.flush()
    return usuario, issue_token(usuario)


def revoke_token(usuario: Usuario, claims: dict[str, Any]) -> None:
    """Logout: this one token stops working everywhere (the revocation lives in PostgreSQL)."""
    expires = datetime.fromtimestamp(int(claims["exp"]), tz=utcnow().tzinfo)
    if db.session.get(TokenRevocado, str(claims["jti"])) is None:
        db.session.add(TokenRevocado(jti=str(claims["jti"]), usuario_id=usuario.id, expires_at=expires))
    events.record_security("logout", usuario.id, {"jti": claims["jti"]})
    db.session.flush()


def revoke_all_tokens(usuario: Usuario) -> None:
    """Password change or deactivation: bump the token version so every earlier token is rejected."""
    usuario.token_version += 1
    db.session.flush()


def prune_revoked_tokens() -> int:
    result = db.session.execute(delete(TokenRevocado).where(TokenRevocado.expires_at < utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
