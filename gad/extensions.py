"""Unbound extension singletons; the app factory binds them with ``init_app``."""

from __future__ import annotations

from typing import Any

from flask.globals import _cv_app
from flask_caching import Cache
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession
from flask_sqlalchemy.session import _app_ctx_id

from gad.models.base import Base
from gad.net import client_address
from gad.ratelimit import LazyLimiter

# Instances waiting for the request's session (gad.db_session.add_when_opened), kept on ``g``.
WAITING_FOR_SESSION = "gad_waiting_for_session"


class RequestSession(FlaskSQLAlchemySession):
    """The request's session. Instances built without a query (a usuario from the token cache) wait on ``g`` and
    join the session when the request opens it, so a request that never needs the database never builds one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        context = _cv_app.get(None)  # as has_app_context() and g, without their proxies
        if context is not None:
            for instance in context.g.pop(WAITING_FOR_SESSION, ()):
                self.add(instance)


def _app_context_id() -> int:
    """The request session's scope, as Flask-SQLAlchemy's own (the id of the current app context), read from Flask's
    context variable instead of through the ``app_ctx`` proxy: every ``db.session`` use asks for it, several
    times a request (docs/BENCHMARKS.md, issue 18's fifth pass)."""
    context = _cv_app.get(None)
    return id(context) if context is not None else _app_ctx_id()  # outside one: Flask-SQLAlchemy's own error


class RequestSQLAlchemy(SQLAlchemy):
    def _teardown_session(self, exc: BaseException | None) -> None:
        # Flask-SQLAlchemy's own removes the session at every app context's end, and where none was opened (most
        # requests that read through the token cache, /health) that is a KeyError raised and caught.
        if self.session.registry.has():
            self.session.remove()


db = RequestSQLAlchemy(model_class=Base, session_options={"expire_on_commit": False, "class_": RequestSession, "scopefunc": _app_context_id})
sock = Sock()
# No template uses Flask-Caching's {% cache %} tag: without it, a worker imports neither the tag nor jinja2.ext.
cache = Cache(with_jinja2_ext=False)
# Limits are declared per route; storage (Redis, else PostgreSQL) is chosen in the factory from REDIS_URL.
# No X-RateLimit-*/Retry-After on every response: a successful login must not carry a Retry-After;
# a 429 gets its Retry-After from the error handler. Flask-Limiter itself is imported on first use.
limiter = LazyLimiter(key_func=client_address, default_limits=[], headers_enabled=False)
