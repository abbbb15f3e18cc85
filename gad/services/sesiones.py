"""Browser sessions kept in PostgreSQL: created at login, checked on every use, revocable from anywhere.

The cookie only carries a random secret; the ``sesiones`` row found by its sha256 decides. A session
ends at the first of: logout (its row is revoked, which every worker and machine sees on the next
request), ``SESSION_IDLE_MINUTES`` without use, ``SESSION_LIFETIME_HOURS`` after login, "log out
everywhere", or a password change / deactivation of its usuario.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, select, update

from gad import policy
from gad.errors import NotFound
from gad.extensions import db
from gad.models import Sesion, Usuario, utcnow
from gad.realtime import events
from gad.schemas.events import Logout

# last_seen_at is written at most this often per session: a write per request would cost more than the read.
TOUCH_EVERY = timedelta(seconds=60)

_BY_SECRET = select(Sesion, Usuario).join(Usuario, Usuario.id == Sesion.usuario_id).where(Sesion.secret_hash == bindparam("secret_hash"))


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _idle() -> timedelta:
    return timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])


def idle_expires_at(sesion: Sesion) -> datetime:
    """When the session ends if it is not used again (never after its absolute expiry)."""
    return min(sesion.last_seen_at + _idle(), sesion.expires_at)


def is_usable(sesion: Sesion, now: datetime) -> bool:
    return sesion.revoked_at is None and now < idle_expires_at(sesion)


def start_session(usuario: Usuario, client: str, user_agent: str | None) -> tuple[Sesion, str]:
    """A new session for a usuario who just proved their password; returns it and the cookie's secret."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    sesion = Sesion(
        secret_hash=_hash(secret),
        usuario_id=usuario.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=current_app.config["SESSION_LIFETIME_HOURS"]),
        client=client[:64],
        user_agent=(user_agent or "")[:200] or None,
    )
    db.session.add(sesion)
    db.session.flush()
    return sesion, secret


def resolve_session(secret: str) -> tuple[Usuario, Sesion] | None:
    """The active usuario and session behind a cookie's secret, or None once it ended for any reason."""
    row = db.session.execute(_BY_SECRET, {"secret_hash": _hash(secret)}).first()
    if row is None:
        return None
    sesion, usuario = row
    now = utcnow()
    if not is_usable(sesion, now) or not usuario.activo:
        return None
    if now - sesion.last_seen_at >= TOUCH_EVERY:
        sesion.last_seen_at = now
    return usuario, sesion


def keep_alive(sesion_id: int) -> None:
    """An open dashboard socket is use: it keeps its session from idling out (never past its lifetime)."""
    db.session.execute(
        update(Sesion).where(Sesion.id == sesion_id, Sesion.revoked_at.is_(None), Sesion.last_seen_at < utcnow() - TOUCH_EVERY).values(last_seen_at=utcnow())
    )


def end_session(sesion: Sesion, actor: Usuario) -> None:
    """Logout of one session: revoked for every worker at once; its websockets close with 1008."""
    if sesion.revoked_at is None:
        sesion.revoked_at = utcnow()
    events.record_security(Logout(session_id=sesion.id, usuario_id=sesion.usuario_id), actor.id)
    db.session.flush()


def end_session_by_id(actor: Usuario, sesion_id: int) -> None:
    """Revoke one session of one's own (an administrador: anyone's). Raises NotFound otherwise, so session
    ids of other usuarios cannot be probed."""
    sesion = db.session.get(Sesion, sesion_id)
    if sesion is None or sesion.revoked_at is not None or not policy.can_end_sessions_of(actor, sesion.usuario_id):
        raise NotFound(f"Session {sesion_id} does not exist.")
    end_session(sesion, actor)


def list_sessions(actor: Usuario) -> list[Sesion]:
    """The actor's own sessions that are still usable, newest first."""
    now = utcnow()
    rows = db.session.scalars(
        select(Sesion).where(Sesion.usuario_id == actor.id, Sesion.revoked_at.is_(None), Sesion.expires_at > now).order_by(Sesion.id.desc())
    )
    return [sesion for sesion in rows if is_usable(sesion, now)]


def revoke_all_sessions(usuario_id: int) -> int:
    """Every session of a usuario ends now (password change, deactivation, log out everywhere)."""
    result = db.session.execute(update(Sesion).where(Sesion.usuario_id == usuario_id, Sesion.revoked_at.is_(None)).values(revoked_at=utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
