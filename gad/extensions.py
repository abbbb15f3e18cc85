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
# Limits are declared per route; storage (Redis or memory) is chosen in the factory from REDIS_URL.
limiter = Limiter(key_func=client_address, default_limits=[], headers_enabled=True)
