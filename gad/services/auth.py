"""Passwords, login with lockout, JWT access tokens and their revocation."""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import jwt
from flask import current_app
from sqlalchemy import Select, bindparam, delete, func, inspect, select, text

from gad import metrics, policy, throttle
from gad.db_session import as_uuid, end_reads, for_update, loaded, refuse_changes_when_detached
from gad.errors import CurrentPasswordRejected, Forbidden, NotFound, TooManyAttempts, Unauthorized, ValidationProblem, field_error
from gad.extensions import db
from gad.models import TokenRevocado, Usuario, utcnow
from gad.pg import Prepared
from gad.principal_cache import principals
from gad.realtime import events
from gad.reqctx import current_flask_app
from gad.schemas.events import AccountLocked, Login, LoginAttempt, LoginFailed, Logout, TokensRevoked
from gad.services import sesiones
from gad.text import canonical_email, visible_length
from gad.vocab import PG_INTEGER_MAX

if TYPE_CHECKING:
    from argon2 import PasswordHasher

logger = logging.getLogger(__name__)

A = TypeVar("A", bound=LoginAttempt)
_Locked = TypeVar("_Locked")


@cache
def _hasher() -> PasswordHasher:
    # argon2id, 64 MiB, t=3, one lane (RFC 9106 memory with a single lane): a verification occupies
    # exactly one core and never fans out into extra threads that would starve the gevent hub. argon2-cffi
    # (its C library and bindings, ~8 M instructions) is loaded by the first password a worker hashes or
    # checks, not by every worker's import: ~1.5 ms once, beside the ~180 ms the first login's hash costs.
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)


_hash_pool: Any = None
JWT_ALGORITHM = "HS256"
GENERIC_LOGIN_FAILURE = "Invalid e-mail or password."


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verifying against this hash when the e-mail is unknown keeps response time independent of whether it
    # exists. Built on first use, not at import: argon2 with 64 MiB would slow every worker's start-up.
    return _hasher().hash("not-a-real-password-for-timing")


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
    return str(_off_hub(_hasher().hash, password))


# Hashes carried over from GRUPO_GAD (passlib over bcrypt, cost 12); replaced by argon2id at the first login.
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


def _check_bcrypt(password_hash: str, password: str) -> bool:
    # bcrypt only ever used the first 72 bytes (the old hashes were made that way); bcrypt 5 raises on
    # longer input instead of truncating, so truncate as the hash was made. Imported here: only a carried-over
    # hash needs it, once per usuario, and every worker's start-up paid for loading it.
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password.encode()[:72], password_hash.encode()))
    except ValueError:
        return False


def needs_rehash(password_hash: str) -> bool:
    """True for a carried-over bcrypt hash or an argon2 hash made with other parameters than ours."""
    if password_hash.startswith(BCRYPT_PREFIXES):
        return True
    hasher = _hasher()
    from argon2.exceptions import InvalidHashError

    try:
        return bool(hasher.check_needs_rehash(password_hash))
    except InvalidHashError:
        return False


def verify_password(password_hash: str, password: str) -> bool:
    if password_hash.startswith(BCRYPT_PREFIXES):
        # Cost 12 is ~0.2 s of CPU: off the hub, like argon2 (the bcrypt package releases the GIL).
        return bool(_off_hub(_check_bcrypt, password_hash, password))

    hasher = _hasher()
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    def check() -> bool:
        try:
            return bool(hasher.verify(password_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return bool(_off_hub(check))


def check_password_policy(password: str, email: str | None, field: str = "password") -> None:
    """Raise ValidationProblem when the password is too short (spaces and invisible characters do not count:
    twelve spaces are no password) or equals the e-mail."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if visible_length(password) < minimum:
        long_enough = len(password) >= minimum
        raise ValidationProblem(
            "Password too weak.",
            errors=[
                {
                    "field": f"body.{field}",
                    "message": f"must have at least {minimum} characters" + (" besides spaces" if long_enough else ""),
                    "type": "password_policy",
                    "mensaje": f"Demasiado corta: al menos {minimum} caracteres" + (" sin contar los espacios." if long_enough else "."),
                }
            ],
        )
    if email and canonical_email(password) == canonical_email(email):
        raise ValidationProblem(
            "Password too weak.",
            errors=[
                {"field": f"body.{field}", "message": "must not be the e-mail address", "type": "password_policy", "mensaje": "No puede ser igual al correo."}
            ],
        )


class IssuedToken(NamedTuple):
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
    if not _claims_fit(claims):
        raise Unauthorized("The token is invalid.")
    return claims


# What ``issue_token`` writes, and what the statements that check a token can hold: ``sub`` a usuario's id and
# ``tv`` its token version (PostgreSQL integers), ``jti`` a logout list key (64 characters). A token signed with
# the key but carrying anything else (a NUL, an id beyond integer, a jti too long to be logged out) is refused
# here, as invalid, before any statement sees it.
_SUB = re.compile(r"[1-9][0-9]{0,9}")
_JTI = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _claims_fit(claims: dict[str, Any]) -> bool:
    sub, jti, tv = claims.get("sub"), claims.get("jti"), claims.get("tv")
    return (
        isinstance(sub, str)
        and _SUB.fullmatch(sub) is not None
        and int(sub) <= PG_INTEGER_MAX
        and isinstance(jti, str)
        and _JTI.fullmatch(jti) is not None
        and type(tv) is int  # bool is an int to Python, not to PostgreSQL's integer
        and 0 <= tv <= PG_INTEGER_MAX
    )


# Built once: constructing the statement on every request cost more than running it. Plain table columns run on
# the connection, not an ORM query: a write re-reads its caller on every request, and the ORM's per-execution
# compile state and row loading cost three times the round trip. Prepared once per connection (gad.pg.Prepared):
# SQLAlchemy's cache key for the select, walked on every execution, cost more than the EXECUTE. The usuario is
# then built as ``_attach`` does.
_USUARIO_TABLE = Usuario.__table__
_PRINCIPAL = Prepared(
    select(
        *(_USUARIO_TABLE.c[attr.columns[0].name] for attr in inspect(Usuario).column_attrs),
        select(TokenRevocado.jti).where(TokenRevocado.jti == bindparam("jti")).exists(),
    ).where(_USUARIO_TABLE.c.id == bindparam("usuario_id"))
)


def authenticate_token(token: str, *, read_only: bool = False) -> tuple[Usuario, dict[str, Any]]:
    """The active usuario a token speaks for. Raises Unauthorized if revoked, stale or the user is inactive.

    ``read_only`` requests may reuse a recent verification of the same token (see principal_cache); every
    other request reads the usuario and the logout list from PostgreSQL (or, ``cached_for_write``, has its
    own write statement check them).
    """
    ttl_s = current_flask_app().config["AUTH_CACHE_SECONDS"]
    usable = principals.usable(ttl_s)
    if read_only and usable and (known := principals.get(token)) is not None:
        values, claims = known
        return _attach(values), claims
    generation = principals.generation
    claims = _verified_claims(token)
    values = _checked_principal(claims)
    if usable:  # a write's verification serves the next request too, a write with its own check included
        seconds = min(ttl_s, int(claims["exp"]) - time.time())  # never past the token's expiry
        principals.put(token, (values, claims), seconds, generation)
    return _attach(values), claims


def _checked_principal(claims: dict[str, Any]) -> dict[str, Any]:
    """The usuario's column values as PostgreSQL holds them now, in one round trip with whether this token was
    logged out. Raises Unauthorized when the token no longer speaks for an active usuario."""
    try:
        usuario_id = int(claims["sub"])
    except (TypeError, ValueError):
        raise Unauthorized("The token is invalid.") from None
    row = _PRINCIPAL.first(db.session.connection(), {"jti": str(claims["jti"]), "usuario_id": usuario_id})
    if row is None or row[-1]:
        raise Unauthorized("The token has been revoked; log in again.")
    values = dict(zip(_USUARIO_KEYS, row, strict=False))
    values["uuid"] = as_uuid(values["uuid"])  # a prepared statement's uuid comes as psycopg2 reads it
    if not values["activo"] or claims.get("tv") != values["token_version"]:
        raise Unauthorized("The token has been revoked; log in again.")
    return values


class CallerCheck:
    """A write's caller as the token cache remembers it, still to be checked against PostgreSQL.

    A write must act only for a usuario who, as its transaction sees the database, is active, at the nivel
    its rules were decided on, with this token neither logged out nor outdated. Reading that first costs a
    round trip of its own (a sixth of a create's CPU in the worker). A write statement that embeds
    ``CALLER_CHECK_SQL`` checks it in the same statement instead, atomically with what it writes: the usuario
    the cache gave, with its ``nivel``, is still the one PostgreSQL holds, so every rule decided on it in
    Python holds as of that statement. Whatever did the check sets ``confirmed``. ``confirm_caller`` does it
    the old way, for a request whose statement did not (a failure, a replayed response):
    ``gad.security.checks_caller_in_statement`` sees to that."""

    __slots__ = ("claims", "confirmed", "nivel", "token")

    def __init__(self, token: str, claims: dict[str, Any], nivel: int) -> None:
        self.token = token
        self.claims = claims
        self.nivel = nivel  # the cached usuario's, which the request's rules are decided on
        self.confirmed = False

    def params(self) -> dict[str, Any]:
        """``CALLER_CHECK_SQL``'s values."""
        return {"_caller": int(self.claims["sub"]), "_caller_tv": int(self.claims["tv"]), "_caller_jti": str(self.claims["jti"]), "_caller_nivel": self.nivel}


# What authenticate_token and _checked_principal decide, as a condition a write statement embeds (one row when the
# cached caller still holds, at the nivel the request's rules were decided on): the same columns, the same logout list.
CALLER_CHECK_SQL = (
    "SELECT 1 FROM usuarios WHERE id = CAST(:_caller AS integer) AND activo AND token_version = CAST(:_caller_tv AS integer) "
    "AND nivel = CAST(:_caller_nivel AS integer) AND NOT EXISTS (SELECT 1 FROM tokens_revocados WHERE jti = CAST(:_caller_jti AS text))"
)


def cached_for_write(token: str) -> tuple[Usuario, CallerCheck] | None:
    """The usuario the token cache verified this token for, for a write that checks its caller in its own
    statement (``CallerCheck``); None when the cache is not in use or does not know the token.

    The usuario stays out of the request's session (``loaded(..., attach=False)``): those writes read their
    caller's columns and change nothing of it (the statement is what checks it), and joining the session cost
    a create 90 k instructions, about 4 % of its CPU (docs/BENCHMARKS.md, issue 18). A query of the same
    usuario in such a request builds a copy of its own, and a change made to the caller raises rather than be lost
    (``refuse_changes_when_detached``)."""
    if not principals.usable(current_flask_app().config["AUTH_CACHE_SECONDS"]):
        return None
    known = principals.get(token)
    if known is None:
        return None
    values, claims = known
    return loaded(Usuario, values, attach=False), CallerCheck(token, claims, int(values["nivel"]))


class CallerCheckedLock(Generic[_Locked]):
    """A row a write locks (``FOR UPDATE``) before it changes it, read by one of two statements built once: the
    plain one, and the same with ``CALLER_CHECK_SQL`` (its values bound at execution) for a caller the token cache
    gave. ``fetch(params, checked)`` runs one of them and returns the row's object, or None."""

    def __init__(self, fetch: Callable[[dict[str, Any], bool], _Locked | None]) -> None:
        self.fetch = fetch

    @classmethod
    def of_query(cls, query: Select[tuple[_Locked]]) -> CallerCheckedLock[_Locked]:
        """For an ORM query; built once, since SQLAlchemy keys a statement built per call on every execution."""
        checked = query.where(text(f"EXISTS ({CALLER_CHECK_SQL})"))
        return cls(lambda params, check: db.session.scalar(checked if check else query, params))

    def one(
        self, params: dict[str, Any], caller: CallerCheck | None = None, usuario: Usuario | None = None, decide: Callable[[], None] = lambda: None
    ) -> _Locked | None:
        """The row, locked, with ``caller`` (the token cache's check of ``usuario``, the request's caller; None when
        the caller was read from PostgreSQL) checked by the same statement instead of a round trip of its own first.

        ``decide``: the rules that depend on the caller alone (a nivel), decided on the cached caller before the
        statement; the check holds that nivel as of the statement. When they refuse, the caller is read first
        (promoted behind the cache) and they decide again. No row back means no row to lock or a caller who no
        longer holds: the caller is read (Unauthorized, or the usuario takes the values PostgreSQL holds), the
        rules decide again on those, and only then is the row looked up unchecked — so a caller they refuse
        never learns whether the row exists."""
        if caller is None or caller.confirmed:
            decide()
            return self.fetch(params, False)
        assert usuario is not None, "a caller to check is some usuario's"
        try:
            decide()
        except Forbidden:
            confirm_caller(caller, usuario)
            decide()
        if not caller.confirmed:
            found = self.fetch(params | caller.params(), True)
            if found is not None:
                caller.confirmed = True
                return found
            confirm_caller(caller, usuario)
            decide()
        return self.fetch(params, False)


def confirm_caller(check: CallerCheck, usuario: Usuario) -> None:
    """Check ``check``'s caller against PostgreSQL now (one round trip) unless something already did; ``usuario``,
    the request's caller, takes the values read. Raises Unauthorized when the token no longer holds."""
    if check.confirmed:
        return
    try:
        values = _checked_principal(check.claims)
    except Unauthorized:
        principals.discard(check.token)  # the next read of this worker checks the token again too
        raise
    held = vars(usuario)
    if any(held.get(key) != value for key, value in values.items()):
        principals.discard(check.token)  # changed behind the cache (a nivel, say): reads must not go on with the old
    held.update(values)  # as a load would have placed them (``db_session.loaded``)
    check.confirmed = True


_VERIFIED_KEY = "gad_verified_tokens"
_MAX_VERIFIED = 10_000


def _verified_claims(token: str) -> dict[str, Any]:
    """``decode_token``, remembered per token string for this app: a signature that verified under this app's
    key verifies again, so a client's next write skips the HMAC and PyJWT's parsing (a tenth of a create's
    CPU). Only the signature is remembered: expiry is checked on every use, and whether the token was revoked
    or its usuario changed is still read from PostgreSQL by the caller. Per app, since the key is per app."""
    verified: dict[str, dict[str, Any]] = current_app.extensions.setdefault(_VERIFIED_KEY, {})
    claims = verified.get(token)
    if claims is not None:
        if int(claims["exp"]) > time.time():
            return claims
        verified.pop(token, None)
    claims = decode_token(token)
    if len(verified) >= _MAX_VERIFIED:
        verified.clear()
    verified[token] = claims
    return claims


_USUARIO_COLUMNS = tuple(inspect(Usuario).column_attrs)
refuse_changes_when_detached(Usuario)  # cached_for_write's usuario is detached
_USUARIO_KEYS = tuple(attr.key for attr in _USUARIO_COLUMNS)


def _attach(values: dict[str, Any]) -> Usuario:
    """A Usuario in this request's session built from verified values, as if just loaded (no SQL); it joins the
    session when the request opens one (a read that needs no query, /users/me, opens none)."""
    return loaded(Usuario, values)


def find_by_email(email: str) -> Usuario | None:
    return db.session.scalar(select(Usuario).where(func.lower(Usuario.email) == canonical_email(email)))


def password_matches(usuario: Usuario | None, password: str) -> bool:
    """The one place a login checks a password. An unknown usuario is checked against a dummy hash,
    so known and unknown e-mails cost the same hash (one timing class)."""
    if usuario is None:
        verify_password(_dummy_hash(), password)
        return False
    return verify_password(usuario.password_hash, password)


def _throttled(email: str, client_address: str) -> throttle.Verdict:
    """Count the attempt before any check; raise TooManyAttempts when this address may not try now."""
    verdict = throttle.reserve_attempt(email, client_address, current_app.config)
    if not verdict.allowed:
        metrics.LOGIN_FAILURES.inc()
        raise TooManyAttempts(
            "Too many login attempts; wait before trying again.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    return verdict


def _attempt(kind: type[A], email: str, usuario: Usuario | None, client_address: str, verdict: throttle.Verdict) -> A:
    """A failed attempt's payload: the e-mail tried is kept only when it names no usuario (a known one is the actor)."""
    if usuario is None:
        return kind(client=client_address, intentos=verdict.attempts, email=canonical_email(email)[:254])
    return kind(client=client_address, intentos=verdict.attempts)


def _failed(email: str, usuario: Usuario | None, client_address: str, verdict: throttle.Verdict) -> None:
    actor_id = usuario.id if usuario else None
    if verdict.attempts >= current_app.config["LOGIN_MAX_FAILURES"]:
        events.record_security(_attempt(AccountLocked, email, usuario, client_address, verdict), actor_id)
    events.record_security(_attempt(LoginFailed, email, usuario, client_address, verdict), actor_id)
    metrics.LOGIN_FAILURES.inc()


def login(email: str, password: str, client_address: str) -> tuple[Usuario, IssuedToken]:
    """Check credentials, throttled per (e-mail, address) and per e-mail (see gad.throttle).

    Raises Unauthorized (one generic message for every failure) or TooManyAttempts (429, Retry-After),
    identically for known and unknown e-mails. Security events are queued on the session, so the caller
    must commit even when this raises.
    """
    # One spelling from here on: a full-width or differently cased spelling of the address must count against the
    # same throttle as the address itself, or each spelling would get its own attempts.
    email = canonical_email(email)
    verdict = _throttled(email, client_address)
    found = find_by_email(email)
    checked_hash = found.password_hash if found is not None else None
    # The hash waits its turn in a pool of PASSWORD_HASH_THREADS (seconds, when a shift logs in at once): with no
    # transaction open meanwhile, so no connection is held and none is ended as idle in transaction.
    end_reads()
    matches = password_matches(found, password)
    rehashed = hash_password(password) if matches and checked_hash is not None and needs_rehash(checked_hash) else None
    # The decision is taken on the row as it is now, locked: deactivated or given another password while the hash
    # ran, the login fails as any wrong password does.
    usuario = db.session.scalar(for_update(select(Usuario).where(Usuario.id == found.id))) if found is not None else None
    if not matches or usuario is None or not usuario.activo or usuario.password_hash != checked_hash:
        _failed(email, usuario, client_address, verdict)
        raise Unauthorized(GENERIC_LOGIN_FAILURE)
    throttle.record_success(email, client_address)
    if rehashed is not None:
        # Same transaction as the login: the imported bcrypt hash is gone exactly when this login commits.
        usuario.password_hash = rehashed
    usuario.ultimo_acceso = utcnow()
    events.record_security(Login(client=client_address), usuario.id)
    db.session.flush()
    return usuario, issue_token(usuario)


def check_current_password(usuario: Usuario, password: str, client_address: str) -> None:
    """Re-authentication before a password change: a wrong one is a failed login for this e-mail and address.

    Raises TooManyAttempts or CurrentPasswordRejected (the caller commits, to keep the security event).
    """
    verdict = _throttled(usuario.email, client_address)
    if not password_matches(usuario, password):
        _failed(usuario.email, usuario, client_address, verdict)
        raise CurrentPasswordRejected(
            "The current password is required to change your password.",
            errors=[field_error("body.current_password", "current_password", "missing or wrong")],
        )
    throttle.record_success(usuario.email, client_address)


def revoke_token(usuario: Usuario, claims: dict[str, Any]) -> None:
    """Logout: this one token stops working everywhere (the revocation lives in PostgreSQL)."""
    expires = datetime.fromtimestamp(int(claims["exp"]), tz=utcnow().tzinfo)
    if db.session.get(TokenRevocado, str(claims["jti"])) is None:
        db.session.add(TokenRevocado(jti=str(claims["jti"]), usuario_id=usuario.id, expires_at=expires))
    events.record_security(Logout(jti=str(claims["jti"])), usuario.id)
    db.session.flush()


def revoke_all_tokens(usuario: Usuario) -> None:
    """Password change, deactivation, log out everywhere: every earlier token (the token version is
    bumped) and every browser session of the usuario stop working."""
    usuario.token_version += 1
    sesiones.revoke_all_sessions(usuario.id)
    db.session.flush()


def log_out_everywhere(actor: Usuario, usuario_id: int) -> None:
    """End every session and token of a usuario now; their websockets close with 1008.

    Raises Forbidden (another usuario's, unless the actor is administrador) or NotFound.
    """
    policy.require_end_sessions_of(actor, usuario_id)
    usuario = db.session.scalar(for_update(select(Usuario).where(Usuario.id == usuario_id)))
    if usuario is None:
        raise NotFound(f"Usuario {usuario_id} does not exist.")
    revoke_all_tokens(usuario)
    events.record_security(TokensRevoked(usuario_id=usuario.id, reason="logout_everywhere"), actor.id)


def prune_revoked_tokens() -> int:
    result = db.session.execute(delete(TokenRevocado).where(TokenRevocado.expires_at < utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
