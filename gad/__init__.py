"""GAD: the operations backend. ``create_app`` builds the Flask application."""

from __future__ import annotations

import logging
from typing import Any

import click
from flask import Config as FlaskConfig
from flask import Flask
from werkzeug.routing import IntegerConverter, Rule

from config import Config, ConfigError, load_config

__version__ = "0.1.0"

logger = logging.getLogger(__name__)


class ReadOnlyConfig(FlaskConfig):
    """``app.config`` once ``create_app`` has finished: settings come from config.py and the environment, and a
    write at run time (which one worker would see and the others not) is a bug, so it raises."""

    _frozen = False

    def freeze(self) -> None:
        self._frozen = True

    def _refuse(self, what: str) -> None:
        if self._frozen:
            raise ConfigError(f"app.config is read-only after start-up ({what}); set the value in the environment (config.py)")

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self or self[key] != value:  # re-stating a value is harmless (``flask`` CLI sets DEBUG)
            self._refuse(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._refuse(key)
        super().__delitem__(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self._refuse(key)
        return super().setdefault(key, default)

    def pop(self, key: str, *args: Any) -> Any:
        self._refuse(key)
        return super().pop(key, *args)


class LazyBuilderRule(Rule):
    """A URL rule whose URL-building functions are compiled the first time a URL is built from it.

    werkzeug generates two builder functions per rule (Python AST, then ``compile``) as the rule is added:
    about 80 % of ``create_app`` for GAD's ~85 rules, paid by every worker before its first request, though
    only a few endpoints are ever passed to ``url_for``. Matching requests does not use them. Should a
    werkzeug release stop calling ``_compile_builder``, rules are simply compiled eagerly again.
    """

    def _compile_builder(self, append_unknown: bool = True) -> Any:
        compile_now = super()._compile_builder
        attribute = "_build_unknown" if append_unknown else "_build"

        def build_first(rule: Rule, *args: Any, **kwargs: Any) -> Any:
            compiled = compile_now(append_unknown).__get__(rule, None)
            setattr(rule, attribute, compiled)  # later builds call the compiled function directly
            return compiled(*args, **kwargs)

        return build_first


class AsciiIntegerConverter(IntegerConverter):
    """``<int:…>`` of ASCII digits only. werkzeug's ``\\d+`` also matches Arabic-Indic, fullwidth and other Unicode
    digits, which ``int()`` reads as the same number: ``/api/v1/tasks/%EF%BC%91`` was tarea 1 under a second address,
    one that path rules in a proxy or a log search never match."""

    regex = r"[0-9]+"


class GadFlask(Flask):
    config_class = ReadOnlyConfig
    url_rule_class = LazyBuilderRule

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url_map.converters["int"] = AsciiIntegerConverter
        # werkzeug answers `/api/v1//tasks` with a 308 to the merged path, an HTML page with a Location built from
        # the Host header: a second address for every path, and a redirect the request's Host can aim. A 404.
        self.url_map.merge_slashes = False
        self._sync: dict[Any, Any] = {}

    def ensure_sync(self, func: Any) -> Any:
        # Flask asks this of every hook and view on every request (about a dozen times), and answers by
        # inspecting the function's code flags each time; the answer never changes for a function.
        try:
            return self._sync[func]
        except KeyError:
            self._sync[func] = result = super().ensure_sync(func)
            return result
        except TypeError:  # unhashable callable
            return super().ensure_sync(func)


def create_app(config: Config | None = None, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app: load and validate config, then wire each subsystem. No database or network access here."""
    config = config or load_config()
    if overrides:
        config = config.with_overrides(overrides)  # validated like the environment's own values
    elif not config.frozen:
        config.validate()
        config.freeze()
    app = GadFlask(__name__, instance_relative_config=False)
    app.config.from_mapping(config.to_flask())
    app.config["GAD_ENV"] = getattr(config, "GAD_ENV", config.ENV_NAME)
    app.config["VERSION"] = __version__
    _resolve_database_url(app)

    from gad import observability

    observability.configure_logging(app)
    register_extensions(app)
    register_error_handlers(app)
    register_request_hooks(app)
    register_blueprints(app)
    register_commands(app)
    register_notification_channels(app)
    app.config.freeze()  # type: ignore[attr-defined]  # Flask types app.config as its own Config
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
            "`./scripts/run` (it starts one under instance/; leave it running for `flask` commands) or set DATABASE_URL=postgres://..."
        )
    app.config["SQLALCHEMY_DATABASE_URI"] = url


def register_extensions(app: Flask) -> None:
    from gad import caching, pg
    from gad.extensions import db, limiter, sock

    pg.install_typecasters()
    db.init_app(app)
    with app.app_context():  # the engine exists now (no connection is opened)
        pg.install_begin_with_first_statement(db.engine)
        pg.install_idle_ping(db.engine, app.config["DB_PING_AFTER_IDLE_S"])
        pg.install_prepared_statements(db.engine, app.config["DB_PREPARED_STATEMENTS"])
    register_migrations(app)
    sock.init_app(app)
    caching.init_app(app)
    # Counters every worker and machine share: Redis when configured, else PostgreSQL (gad.ratelimit_storage).
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "gadpg://")
    # A storage outage must not turn logins into 500s: fall back to per-process counters meanwhile.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", app.config["CACHE_KEY_PREFIX"] + "rl")
    # GAD sets no default, application or blueprint limits: only views decorated with a limit (the two
    # logins), and their decorator checks the limit itself. A serving worker therefore imports and binds
    # Flask-Limiter at the first login (gad.ratelimit); the command line (`flask limiter …` lists limits)
    # and an app given default or application limits bind it now, as Flask-Limiter documents.
    limited_everywhere = bool(app.config.get("RATELIMIT_DEFAULT") or app.config.get("RATELIMIT_APPLICATION"))
    eager = limited_everywhere or click.get_current_context(silent=True) is not None
    limiter.init_app(app, eager=eager)
    if eager and not limited_everywhere:
        # Flask-Limiter's before_request check would conclude "no limit here" on every request of every
        # endpoint, a fifth of /health's CPU (BENCHMARKS).
        app.before_request_funcs[None].remove(limiter.real._check_request_limit)
        _only_where_limited(app, limiter.real)


def _only_where_limited(app: Flask, limiter: Any) -> None:
    """Flask-Limiter's after-request hook (conditional deductions, rate-limit headers) and teardown (drop the
    request's state) act on the state a limit check leaves on the request. A request no limit was checked
    for has none, and there both are no-ops that still built that state to find it empty: skip them."""
    from gad.ratelimit import has_limiter_state

    def wrap_after(hook: Any) -> Any:
        def after(response: Any) -> Any:
            return hook(response) if has_limiter_state() else response

        return after

    def wrap_teardown(hook: Any) -> Any:
        def teardown(exc: BaseException | None = None) -> None:
            if has_limiter_state():
                hook(exc)

        return teardown

    def owned(hook: Any) -> bool:
        return getattr(hook, "__self__", None) is limiter or getattr(hook, "args", ())[:1] == (limiter,)

    app.after_request_funcs[None] = [wrap_after(h) if owned(h) else h for h in app.after_request_funcs[None]]
    app.teardown_request_funcs[None] = [wrap_teardown(h) if owned(h) else h for h in app.teardown_request_funcs[None]]


def register_migrations(app: Flask) -> None:
    """Flask-Migrate only for command lines (``flask db upgrade`` is Fly's release command).

    Flask-Migrate pulls in alembic and mako: about 100 ms and several MB that a serving worker never
    uses. The ``flask`` command builds the app inside a click context; gunicorn and the tests do not.
    """
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
    from gad.blueprints import http

    # after_request hooks run in reverse order: commit first, then headers, then the access log line.
    observability.init_app(app)
    security.init_app(app)
    db_session.init_app(app)
    # An app hook, so it runs before every blueprint's (authentication's among them).
    app.before_request(http.read_body_first)


def register_blueprints(app: Flask) -> None:
    from gad.blueprints import (
        auth,
        cache_admin,
        consola,
        docs,
        efectivos,
        eventos,
        health,
        notificaciones,
        pages,
        reportes,
        stats,
        tareas,
        turnos,
        usuarios,
        ws,
    )

    for module in (health, docs, auth, usuarios, efectivos, tareas, notificaciones, stats, eventos, cache_admin, ws, pages, consola, turnos, reportes):
        app.register_blueprint(module.bp)
    for module in (turnos, reportes):  # their dashboard pages (Planificación, Informes)
        app.register_blueprint(module.pages)


def register_notification_channels(app: Flask) -> None:
    """Refuse to start with a NOTIF_CANALES name no module registered (a typo would silently notify nobody)."""
    from gad.services import canales

    try:
        canales.active(app.config["NOTIF_CANALES"])
    except LookupError as exc:
        raise ConfigError(str(exc)) from None


def register_commands(app: Flask) -> None:
    app.cli.add_command(_LazyCommands("gad", help="GAD administration commands."))


class _LazyCommands(click.Group):
    """``flask gad …``: the real group (gad.commands.cli) and all it imports — the GRUPO_GAD importer, the audit
    export, demo seeding — load when the command line first asks for a command, not in every serving worker."""

    def _group(self) -> click.Group:
        from gad.commands.cli import gad_cli

        return gad_cli

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._group().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._group().get_command(ctx, cmd_name)


def _migrations_dir() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"
