"""GAD: the operations backend. ``create_app`` builds the Flask application."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from config import Config, ConfigError, load_config

__version__ = "0.1.0"

logger = logging.getLogger(__name__)


def create_app(config: Config | None = None, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app: load and validate config, then wire each subsystem. No database or network access here."""
    config = config or load_config()
    app = Flask(__name__, instance_relative_config=False)
    app.config.from_mapping(config.to_flask())
    app.config["GAD_ENV"] = config.ENV_NAME
    app.config["VERSION"] = __version__
    if overrides:
        app.config.update(overrides)
    _resolve_database_url(app)

    from gad import observability

    observability.configure_logging(app)
    register_extensions(app)
    register_error_handlers(app)
    register_request_hooks(app)
    register_blueprints(app)
    register_commands(app)
    register_notification_channels(app)
    return app


def _resolve_database_url(app: Flask) -> None:
    """Outside production a missing DATABASE_URL means the embedded server started by ``python -m gad.dev``."""
    if app.config.get("SQLALCHEMY_DATABASE_URI"):
        return
    from gad.embedded import url_if_running

    embedded_dir = app.config.get("EMBEDDED_DB_DIR")
    url = url_if_running(embedded_dir) if embedded_dir else None
    if url is None:
        raise ConfigError(
            "DATABASE_URL is not set and no embedded PostgreSQL is running: start the service with "
            "`python -m gad.dev` (it starts one under instance/) or set DATABASE_URL=postgres://..."
        )
    app.config["SQLALCHEMY_DATABASE_URI"] = url


def register_extensions(app: Flask) -> None:
    from gad import caching, pg
    from gad.extensions import db, limiter, sock

    pg.install_typecasters()
    db.init_app(app)
    register_migrations(app)
    sock.init_app(app)
    caching.init_app(app)
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # A Redis outage must not turn logins into 500s: fall back to per-process counters meanwhile.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", app.config["CACHE_KEY_PREFIX"] + "rl")
    limiter.init_app(app)


def register_migrations(app: Flask) -> None:
    """Flask-Migrate only for command lines (``flask db upgrade`` is Fly's release command).

    Flask-Migrate pulls in alembic and mako: about 100 ms and several MB that a serving worker never
    uses. The ``flask`` command builds the app inside a click context; gunicorn and the tests do not.
    """
    import click

    if click.get_current_context(silent=True) is None:
        return
    from flask_migrate import Migrate

    from gad.extensions import db

    Migrate(app, db, directory=str(_migrations_dir()), compare_type=True)


def register_error_handlers(app: Flask) -> None:
    from gad.errors import register_error_handlers as register

    register(app)


def register_request_hooks(app: Flask) -> None:
    from gad import db_session, observability, security

    # after_request hooks run in reverse order: commit first, then headers, then the access log line.
    observability.init_app(app)
    security.init_app(app)
    db_session.init_app(app)


def register_blueprints(app: Flask) -> None:
    from gad.blueprints import auth, cache_admin, docs, efectivos, eventos, health, notificaciones, pages, stats, tareas, usuarios, ws

    for module in (health, docs, auth, usuarios, efectivos, tareas, notificaciones, stats, eventos, cache_admin, ws, pages):
        app.register_blueprint(module.bp)


def register_notification_channels(app: Flask) -> None:
    """Refuse to start with a NOTIF_CANALES name no module registered (a typo would silently notify nobody)."""
    from gad.services import canales

    try:
        canales.active(app.config["NOTIF_CANALES"])
    except LookupError as exc:
        raise ConfigError(str(exc)) from None


def register_commands(app: Flask) -> None:
    from gad.commands import gad_cli

    app.cli.add_command(gad_cli)


def _migrations_dir() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"
