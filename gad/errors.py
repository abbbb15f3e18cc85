"""The error hierarchy and the one handler that turns every error into application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from flask import Flask, Response, current_app, json, render_template, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import WebsocketMismatch

from gad.i18n import PAGINA_CADUCADA, mensaje, pagina_error

logger = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"


class AppError(Exception):
    """Base of every error a service or view raises on purpose; ``code`` is stable for clients."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        # Every field error carries its Spanish mensaje (the forms show it beside the field), however it was built.
        self.errors = (
            None if errors is None else [e if "mensaje" in e else e | {"mensaje": mensaje(e.get("field", ""), e.get("type", ""), e.get("ctx"))} for e in errors]
        )
        self.headers = headers or {}
        self.extra = extra


class ValidationProblem(AppError):
    status = 422
    code = "validation_error"
    title = "Validation failed"


class MalformedRequest(AppError):
    status = 400
    code = "malformed_request"
    title = "Malformed request"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="gad"'})
        super().__init__(detail, **kwargs)


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class PasswordChangeRequired(Forbidden):
    code = "password_change_required"


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "Transition not allowed"


class PreconditionFailed(AppError):
    status = 412
    code = "precondition_failed"
    title = "Precondition failed"


class PreconditionRequired(AppError):
    status = 428
    code = "precondition_required"
    title = "Precondition required"


class TooManyAttempts(AppError):
    """Login attempts for this e-mail from this address (or, under attack, from unknown addresses) used up."""

    status = 429
    code = "too_many_login_attempts"
    title = "Too many login attempts"


class CurrentPasswordRejected(ValidationProblem):
    """A wrong ``current_password``: counted as a failed login, so the caller keeps the count (commits)."""


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    code: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"https://gad.example/problems/{code}" if code else "about:blank",
        "title": title,
        "status": status,
        "detail": detail or title,
        "instance": request.path if request else None,
    }
    if code:
        body["code"] = code
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    if _wants_page():
        titulo, texto = PAGINA_CADUCADA if (extra or {}).get("code_hint") == "csrf" else pagina_error(status)
        response = current_app.response_class(render_template("aviso.html", usuario=None, titulo=titulo, mensaje=texto), status=status, mimetype="text/html")
    else:
        response = current_app.response_class(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# Where a machine is the client (the API, the websocket, health checks, metrics, files): problem+json, whatever it accepts.
_MACHINE_PATHS = ("/api/", "/ws/", "/health", "/metrics", "/static/", "/mi/")


def _wants_page() -> bool:
    """A person's browser opened a page that cannot be shown: it gets the page in Spanish rather than the problem
    document (a raw English JSON body in the tab). A script's fetch accepts JSON first, and gets the document."""
    if not request or request.path.startswith(_MACHINE_PATHS):
        return False
    return request.accept_mimetypes.best_match((PROBLEM_MIMETYPE, "application/json", "text/html")) == "text/html"


def pydantic_errors(exc: ValidationError, location: str = "body") -> list[dict[str, Any]]:
    """Field paths such as ``body.prioridad`` or ``query.limit`` with pydantic's message and type, and the Spanish ``mensaje`` forms show."""
    out = []
    for err in exc.errors(include_url=False):  # the input is looked at, never echoed
        parts = [location, *err["loc"]]
        ctx = err.get("ctx") or {}
        inside = ctx.get("path")  # a model-level check names the value it refused (a NUL)
        if inside:
            parts.append(inside)
        kind, message = err["type"], err["msg"]
        if kind in _TEXT_LENGTH and isinstance(err.get("input"), str):
            # A text cleaned before it is checked (Text, Name: a BeforeValidator) has its length checked as a list's
            # would be, and pydantic counts "items": it is a text, and its length is in characters.
            kind, message = _TEXT_LENGTH[kind][0], _TEXT_LENGTH[kind][1].format(**ctx)
        out.append(field_error(".".join(str(part) for part in parts), kind, message, ctx))
    return out


_TEXT_LENGTH = {
    "too_long": ("string_too_long", "String should have at most {max_length} characters"),
    "too_short": ("string_too_short", "String should have at least {min_length} characters"),
}


def field_error(path: str, kind: str, message: str, ctx: dict[str, Any] | None = None, *, es: str | None = None) -> dict[str, Any]:
    """One entry of a 422's ``errors``: the field's path, the English message and type, and the Spanish ``mensaje``
    (``es`` where the rule needs its own words, else the wording for ``kind``)."""
    return {"field": path, "message": message, "type": kind, "mensaje": es if es is not None else mensaje(path, kind, ctx)}


def _handle_app_error(exc: AppError) -> Response:
    return problem_response(exc.status, exc.title, exc.detail, code=exc.code, errors=exc.errors, headers=exc.headers, extra=exc.extra)


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers: dict[str, str] = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    if exc.response is not None and exc.response.headers.get("Retry-After"):
        headers["Retry-After"] = exc.response.headers["Retry-After"]
    code = (exc.name or "error").lower().replace(" ", "_")
    detail = exc.description
    if isinstance(exc, WebsocketMismatch):  # werkzeug's routing refuses it before any view: its words are generic
        detail = "This address is a websocket: open it with a websocket handshake (Upgrade: websocket), not as a page."
    if status == 429:
        detail = "Too many requests from this client; retry later."
        headers.setdefault("Retry-After", _rate_limit_retry_after())
    return problem_response(status, exc.name or "Error", detail, code=code, headers=headers)


def _rate_limit_retry_after() -> str:
    """Seconds until the window of the limit just exceeded resets (60 when it cannot be told)."""
    import time

    from gad.extensions import limiter

    current = limiter.current_limit
    if current is None:
        return "60"
    return str(max(1, int(current.reset_at - time.time()) + 1))


def _handle_unexpected(exc: Exception) -> Response:
    if _unreadable_body(exc):
        # The client's fault, not ours: a chunked body gunicorn could not decode while the view read it (a bad
        # chunk size, a chunk without its CRLF), or one that ended early. gunicorn closes the connection after
        # this answer, since where the next request would start is unknown.
        from gad.rejections import body_detail

        logger.warning("unreadable request body on %s %s: %s", request.method, request.path, type(exc).__name__)
        return problem_response(400, "Bad Request", body_detail(exc), code="bad_request")
    # In tests (PROPAGATE_EXCEPTIONS) Flask re-raises before reaching here, so bugs are not hidden.
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return problem_response(500, "Internal server error", "An unexpected error occurred.", code="internal_error")


def _unreadable_body(exc: Exception) -> bool:
    """Whether ``exc`` is gunicorn's, raised from ``wsgi.input`` as the body was read: gunicorn's module is looked up,
    not imported, so this costs nothing where gunicorn is not serving (tests, ``flask run``) or on success."""
    errors = sys.modules.get("gunicorn.http.errors")
    return errors is not None and isinstance(exc, (errors.ParseException, errors.NoMoreData))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(AppError, _handle_app_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
