"""Unbound extension singletons; the app factory binds them with ``init_app``."""

from __future__ import annotations

from flask_caching import Cache
from flask_limiter import Limiter
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy

from gad.models.base import Base
from gad.net import client_address

db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
sock = Sock()
cache = Cache()
# Limits are declared per route; storage (Redis, else PostgreSQL) is chosen in the factory from REDIS_URL.
# No X-RateLimit-*/Retry-After on every response: a successful login must not carry a Retry-After;
# a 429 gets its Retry-After from the error handler.
limiter = Limiter(key_func=client_address, default_limits=[], headers_enabled=False)
