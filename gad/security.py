"""Request identity (Bearer token or browser session + CSRF), security headers and CORS."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, Request, Response, g, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin

from gad import policy
from gad.errors import Forbidden, Unauthorized
from gad.extensions import db
from gad.models import Sesion, Usuario
from gad.observability import HeaderWriter, add_header_writer
from gad.reqctx import current_flask_app, current_g, current_request
from gad.services import auth, sesiones

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PAGE_USUARIO_HEADER = "X-GAD-Usuario"
CSRF_HEADER = "X-CSRF-Token"
# The cookie holds only this random secret (and the CSRF token); the sesiones row decides (services/sesiones.py).
SESSION_SECRET_KEY = "sid"
SESSION_CSRF_KEY = "csrf"


def _bearer_token() -> str | None:
    # The WSGI environ, not request.headers: the same value without building the headers view.
    header = current_request().environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def csrf_token() -> str:
    """The session's CSRF token, created on first use (rendered into forms and read by the dashboard's JS)."""
    token = session.get(SESSION_CSRF_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_CSRF_KEY] = token
    return str(token)


def csrf_matches(submitted: str | None) -> bool:
    expected = session.get(SESSION_CSRF_KEY)
    return bool(expected and submitted and secrets.compare_digest(str(expected), submitted))


def check_csrf(submitted: str | None) -> None:
    if not csrf_matches(submitted):
        raise Forbidden("Missing or invalid CSRF token.", code_hint="csrf", mensaje="La página es de una sesión anterior: recárguela.")


def start_session(usuario: Usuario) -> None:
    """Browser login: a new server-side session (a fresh cookie and CSRF token, so no session fixation)."""
    from gad.net import client_address

    session.clear()
    _, secret = sesiones.start_session(usuario, client_address(), request.user_agent.string)
    session[SESSION_SECRET_KEY] = secret
    session.permanent = False
    csrf_token()


def _browser_session() -> tuple[Usuario, Sesion] | None:
    """The usuario and server-side session behind this request's cookie, resolved once per request."""
    if "browser_session" in g:
        return g.browser_session
    secret = session.get(SESSION_SECRET_KEY)
    resolved = sesiones.resolve_session(str(secret)) if secret else None
    if resolved is None and secret:
        # Ended elsewhere (logout, expiry, revocation): the secret is worth nothing now. Only it goes: clearing the
        # whole cookie also took the CSRF token of a login form open in another tab, refused once as "caducada"
        # because an old tab's background request came in between.
        session.pop(SESSION_SECRET_KEY, None)
    g.browser_session = resolved
    return resolved


def current_browser_session() -> Sesion | None:
    resolved = _browser_session()
    return resolved[1] if resolved else None


def end_session() -> None:
    """Browser logout: the server-side record is revoked, so every copy of the cookie dies with it."""
    resolved = _browser_session()
    if resolved is not None:
        sesiones.end_session(resolved[1], resolved[0])
    session.clear()


def _session_user() -> Usuario | None:
    resolved = _browser_session()
    return resolved[0] if resolved else None


def resolve_user(token: str | None = None, allow_session: bool = True) -> tuple[Usuario, str, dict[str, Any] | None]:
    """Authenticate from an explicit token, the Authorization header, or the session cookie. Raises Unauthorized."""
    token = token or _bearer_token()
    if token:
        safe = current_request().method in SAFE_METHODS
        if not safe and _view_checks_caller():
            cached = auth.cached_for_write(token)
            if cached is not None:
                usuario, check = cached
                vars(current_g())[_CALLER_CHECK_KEY] = check
                return usuario, "token", check.claims
        # Reads may reuse a recent verification of this token; writes check PostgreSQL.
        usuario, claims = auth.authenticate_token(token, read_only=safe)
        return usuario, "token", claims
    if allow_session:
        usuario_session = _session_user()
        if usuario_session is not None:
            return usuario_session, "session", None
    raise Unauthorized("Authentication required: send 'Authorization: Bearer <token>' or log in.")


_CHECKS_CALLER_ATTRIBUTE = "gad_checks_caller_in_statement"
_CALLER_CHECK_KEY = "caller_check"


def checks_caller_in_statement(view: Callable[..., Response]) -> Callable[..., Response]:
    """A write view whose service checks its caller inside its own write statement (``caller_check()``, passed
    on: ``auth.CallerCheck``), so its caller may come from the token cache and the round trip that re-reads it
    first is saved. Whatever the statement did not confirm is confirmed here, against PostgreSQL, before the
    response leaves: after a failure (a logged-out or outdated token gets its 401, never the failure's own
    answer) and after a success that ran no checked statement (an idempotent replay)."""

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Response:
        try:
            response = view(*args, **kwargs)
        except Unauthorized:
            raise  # already the answer a check would give
        except Exception:
            check = caller_check()
            if check is not None and not check.confirmed:
                db.session.rollback()  # the request fails either way, and a failed statement would refuse the check
                auth.confirm_caller(check, current_user())
            raise
        check = caller_check()
        if check is not None:
            auth.confirm_caller(check, current_user())
        return response

    setattr(checked, _CHECKS_CALLER_ATTRIBUTE, True)
    return checked


def _view_checks_caller() -> bool:
    request_ = current_request()
    view = current_flask_app().view_functions.get(request_.endpoint) if request_.endpoint else None
    return getattr(view, _CHECKS_CALLER_ATTRIBUTE, False)


def caller_check() -> auth.CallerCheck | None:
    """This request's caller still to be checked by its write statement, or None when it was read from PostgreSQL."""
    check: auth.CallerCheck | None = vars(current_g()).get(_CALLER_CHECK_KEY)
    return check


def current_user() -> Usuario:
    """The authenticated usuario of this request (cached on ``g``); cookie-authenticated writes need CSRF."""
    # g's attributes as its own get/__setattr__ keep them, in its __dict__, without a Python call for each.
    state = vars(current_g())
    known: Usuario | None = state.get("current_user")
    if known is not None:
        return known
    usuario, method, claims = resolve_user()
    if method == "session":
        check_page_usuario(usuario, request.headers.get(PAGE_USUARIO_HEADER))
        if request.method not in SAFE_METHODS:
            check_csrf(request.headers.get(CSRF_HEADER) or request.form.get("csrf_token"))
    state.update(current_user=usuario, auth_method=method, token_claims=claims)
    return usuario


def check_page_usuario(usuario: Usuario, drawn_for: str | None) -> None:
    """A page says whom it was drawn for (``X-GAD-Usuario``, the socket's ``usuario``): on a shared phone an old tab of
    one officer, whose session another's login replaced, rode the new cookie, read the other's tareas under its own
    name and sent its outbox (an SOS) as them, refused for its stale CSRF token and so dropped. For that page the
    session is over (401): its outbox waits for its officer, and it says "Su sesión ha caducado"."""
    if drawn_for is not None and drawn_for != str(usuario.id):
        raise Unauthorized("This page was drawn for another usuario's session: log in again.")


def page_user() -> Usuario | None:
    """A browser page's caller, or None when nobody is logged in: resolved once per request and shared with
    ``current_user`` through ``g``. Each resolution of a cached token builds a new Usuario that joins the request's
    session when it opens, and two copies of one row there fail the first flush (a 403's audit, say). No CSRF
    check: a page checks the token of the form it handles."""
    state = vars(current_g())
    known: Usuario | None = state.get("current_user")
    if known is not None:
        return known
    try:
        usuario, method, claims = resolve_user()
    except Unauthorized:
        return None
    state.update(current_user=usuario, auth_method=method, token_claims=claims)
    return usuario


def is_local_path(target: str | None) -> bool:
    """Only same-site absolute paths: no scheme, no host, no protocol-relative ``//`` or backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    return not any(ch in target for ch in "\r\n\t")


_CSP = (
    "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
_CORS_HEADERS = (
    ("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, Idempotency-Key, X-CSRF-Token, X-Request-ID"),
    ("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    ("Access-Control-Expose-Headers", "ETag, Location, X-Request-ID, Retry-After"),
)


def _header_writer(app: Flask) -> HeaderWriter:
    """Security headers on every response (a view's own value wins) and CORS for listed origins, added as the
    response leaves (``observability.RequestBoundary``), with what depends only on the settings worked out once."""
    always = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "strict-origin-when-cross-origin")]
    if app.config.get("GAD_ENV") == "production":
        always.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    names = frozenset(name.lower() for name, _ in always)
    cors_origins = frozenset(app.config.get("CORS_ORIGINS", []))
    cors_names = frozenset(name.lower() for name, _ in _CORS_HEADERS) | {"access-control-allow-origin"}

    def write(environ: dict[str, Any], headers: list[tuple[str, str]], present: dict[str, str]) -> None:
        if names.isdisjoint(present):
            headers.extend(always)
        else:
            headers.extend(header for header in always if header[0].lower() not in present)
        # The mimetype as werkzeug reads it (Response.mimetype): the content type without its parameters.
        if "content-security-policy" not in present and present.get("content-type", "").partition(";")[0].strip() == "text/html":
            headers.append(("Content-Security-Policy", _CSP))
        # An answer to a request with credentials may hold personal data (a DNI, someone's tareas): no browser or
        # proxy keeps it, so a shared terminal's disk cache or back button shows nothing after logout. A response
        # that chose its caching keeps it (static files, the API document, the exports).
        if "cache-control" not in present and ("HTTP_AUTHORIZATION" in environ or "HTTP_COOKIE" in environ):
            headers.append(("Cache-Control", "no-store"))
        origin = environ.get("HTTP_ORIGIN")
        if origin and origin in cors_origins:
            # Set: any value a view gave these is replaced. Vary is merged instead: the answer also varies with
            # whatever the view or Flask's session (Cookie) already named.
            varies = [value.strip() for name, values in headers if name.lower() == "vary" for value in values.split(",") if value.strip()]
            headers[:] = [header for header in headers if header[0].lower() not in cors_names and header[0].lower() != "vary"]
            if "origin" not in {value.lower() for value in varies}:
                varies.append("Origin")
            headers.extend([("Access-Control-Allow-Origin", origin), ("Vary", ", ".join(varies)), *_CORS_HEADERS])

    return write


def _audit_denials_hook(response: Response) -> Response:
    return _audit_denials(response) if response.status_code == 403 else response


def _audit_denials(response: Response) -> Response:
    """A 403 rolls its transaction back, so the denial is recorded in a transaction of its own."""
    if response.status_code == 403 and "current_user" in g:
        from gad.extensions import db
        from gad.realtime.events import record_security
        from gad.schemas.events import PermissionDenied

        try:
            record_security(PermissionDenied(method=request.method, path=request.path), g.current_user.id)
            db.session.commit()
        except Exception:
            db.session.rollback()
            logger.exception("could not record a permission_denied event")
    return response


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, without building a signing serializer for requests that carry no
    session cookie (API clients, health checks, metrics scrapes): that construction cost more per request
    than the /health view itself. A request with a cookie is handled exactly as Flask does."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # No Cookie header at all (most API calls): not even the cookie jar is parsed.
        if app.secret_key and ("HTTP_COOKIE" not in request.environ or self.get_cookie_name(app) not in request.cookies):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        # An empty session nobody read or changed: Flask would look up five cookie settings to do nothing.
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    app.session_interface = CookieSessionInterface()
    add_header_writer(app, _header_writer(app))
    app.after_request(_audit_denials_hook)
    app.jinja_env.globals["csrf_token"] = csrf_token


# The API a usuario whose password an administrador chose may still use: who they are, and their own PATCH that
# changes it (policy.check_usuario_update refuses one without a password). The auth blueprint runs no
# authentication hook: logging out, here or everywhere, and listing or ending one's own sessions stay open. The
# pages' counterpart is gad.blueprints.consola's redirect to /cambiar-clave.
_API_OPEN_WHILE_CHANGING = frozenset({"usuarios.me", "usuarios.update_usuario"})


def require_authentication() -> None:
    """Blueprint ``before_request`` hook: identify the caller before any input is parsed (401 before 422), and
    refuse (403) one who must first change the password an administrador chose, except to change it.

    Not for ``OPTIONS``: a browser sends a CORS preflight without credentials and gives up unless it gets a 2xx;
    Flask answers it itself (``Allow``, no view runs, nothing is read) and the CORS headers are added as for any
    response (``_header_writer``)."""
    request_ = current_request()
    if request_.method == "OPTIONS":
        return
    usuario = current_user()
    if usuario.debe_cambiar_clave:
        own = request_.endpoint in _API_OPEN_WHILE_CHANGING and (request_.view_args or {}).get("usuario_id", usuario.id) == usuario.id
        if not own:
            policy.require_chosen_password(usuario)
