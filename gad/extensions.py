"""Unbound extension singletons; the app factory binds them with ``init_app``."""

from __future__ import annotations

from typing import Any

from flask import g, has_app_context
from flask_caching import Cache
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession

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
        if has_app_context():
            for instance in g.pop(WAITING_FOR_SESSION, ()):
                self.add(instance)


db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False, "class_": RequestSession})
sock = Sock()
# No template uses Flask-Caching's {% cache %} tag: without it, a worker imports neither the tag nor jinja2.ext.
cache = Cache(with_jinja2_ext=False)
# Limits are declared per route; storage (Redis, else PostgreSQL) is chosen in the factory from REDIS_URL.
# No X-RateLimit-*/Retry-After on every response: a successful login must not carry a Retry-After;
# a 429 gets its Retry-After from the error handler. Flask-Limiter itself is imported on first use.
limiter = LazyLimiter(key_func=client_address, default_limits=[], headers_enabled=False)
