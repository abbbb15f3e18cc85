"""Configuration classes per environment, read from environment variables and validated at start-up."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

BASE_DIR = Path(__file__).resolve().parent

# Values that appear in tutorials and .env examples; a production key equal to one of them is as good as none.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "secret",
        "secret-key",
        "your-secret-key",
        "dev",
        "development",
        "please-change-me-in-production-please-change-me",
        "insecure-development-key-do-not-use-in-production",
    }
)
MIN_SECRET_KEY_LENGTH = 32
DEV_SECRET_KEY = "insecure-development-key-do-not-use-in-production"
# The audit chain's key outside production. Development and testing share it so a log written by one
# (a test gunicorn runs as development) verifies under the other.
DEV_AUDIT_KEY = "insecure-development-audit-key-do-not-use-in-production"


class ConfigError(Exception):
    """A setting is missing or unsafe; the message names the variable and how to set it."""


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _in_range(name: str, value: float, minimum: float | None, maximum: float | None, default: float) -> None:
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"at least {minimum:g}" if maximum is None else f"between {minimum:g} and {maximum:g}"
        raise ConfigError(f"{name} must be {bounds}, got {value:g}: set e.g. {name}={default:g}")


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}: set e.g. {name}={default}") from None
    _in_range(name, value, minimum, maximum, default)
    return value


def env_float(name: str, default: float, minimum: float | None = None, maximum: float | None = None) -> float:
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}: set e.g. {name}={default}") from None
    if value != value or value in {float("inf"), float("-inf")}:
        raise ConfigError(f"{name} must be a finite number, got {raw!r}: set e.g. {name}={default}")
    _in_range(name, value, minimum, maximum, default)
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def env_list(name: str) -> list[str]:
    raw = env_str(name, "") or ""
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_deadlines(raw: str, name: str = "NOTIF_PLAZOS") -> dict[str, int]:
    """``causa[:prioridad]=seconds,...`` -> {"emergencia": 60, "asignacion:5": 120}; 0 means never escalate."""
    out: dict[str, int] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        causa, _, prioridad = key.strip().partition(":")
        try:
            seconds = int(value)
        except ValueError:
            seconds = -1
        if not sep or not causa or seconds < 0 or (prioridad and prioridad not in {"1", "2", "3", "4", "5"}):
            raise ConfigError(f"{name}: {item!r} is not causa[:prioridad]=seconds, e.g. {name}=emergencia=60,asignacion=300,asignacion:5=120")
        out[key.strip()] = seconds
    return out


def normalize_database_url(url: str) -> str:
    """Fly Postgres and Heroku hand out ``postgres://`` URLs; SQLAlchemy wants an explicit driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


EXAMPLE_DATABASE_URL = "postgres://user:password@host:5432/gad"


def env_database_url(name: str) -> str | None:
    """A PostgreSQL URL SQLAlchemy can use, or a ConfigError naming ``name`` (the URL is never echoed: it holds a password)."""
    raw = env_str(name)
    if raw is None:
        return None
    url = normalize_database_url(raw)
    if not url.startswith("postgresql+psycopg2://"):
        scheme = raw.split("://", 1)[0] if "://" in raw else None
        got = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ConfigError(f"{name} must be a PostgreSQL URL such as {EXAMPLE_DATABASE_URL}, got {got}")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        port = make_url(url).port
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{name} is not a valid URL (check the port and any special characters, which must be %-encoded): expected e.g. {EXAMPLE_DATABASE_URL}"
        ) from None
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{name} has port {port}, outside 1-65535: expected e.g. {EXAMPLE_DATABASE_URL}")
    return url


class Config:
    """Settings shared by every environment. Values are read when the class is instantiated, then validated
    and frozen: after ``validate`` nothing changes a setting (overrides go through ``with_overrides``)."""

    ENV_NAME: ClassVar[str] = "base"
    TESTING = False
    DEBUG = False
    _frozen = False

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            raise ConfigError(f"the configuration is read-only once validated; {name} cannot change (set it in the environment)")
        super().__setattr__(name, value)

    def freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    @property
    def frozen(self) -> bool:
        return self._frozen

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A validated, frozen copy with ``overrides`` applied (tests, embedded tools): they pass the same checks
        as the environment, including the production ones when ``GAD_ENV`` says production."""
        from flask import Flask  # here, not at import: gunicorn's master reads this module too

        flask_keys = set(Flask.default_config)
        unknown = sorted(name for name in overrides if not hasattr(self, name) and name not in flask_keys and name != "GAD_ENV")
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(unknown)} (see config.py for the names)")
        clone = copy.copy(self)
        object.__setattr__(clone, "_frozen", False)
        for name, value in overrides.items():
            setattr(clone, name, value)
        clone.validate()
        if overrides.get("GAD_ENV") == "production":
            clone.validate_production()
        clone.freeze()
        return clone

    def __init__(self) -> None:
        self.SECRET_KEY = env_str("SECRET_KEY")
        self.SQLALCHEMY_DATABASE_URI = env_database_url("DATABASE_URL")
        self.REDIS_URL = env_str("REDIS_URL")
        self.CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "gad:") or "gad:"
        # Connections a worker may keep, opened only when that many of its requests need one at once. No
        # overflow by default: an overflow connection is closed as soon as it is returned to a full pool, so
        # under sustained load past the pool every few requests opened a PostgreSQL session (a backend
        # started, the connection set up, its statements prepared again) only to close it — 9 % of GETs at 16
        # clients on 10 + 20 (docs/BENCHMARKS.md). The same 30 at most, kept once opened.
        self.DB_POOL_SIZE = env_int("DB_POOL_SIZE", 30, 1)
        self.DB_MAX_OVERFLOW = env_int("DB_MAX_OVERFLOW", 0, 0)
        self.DB_POOL_TIMEOUT = env_int("DB_POOL_TIMEOUT", 30, 1)
        self.DB_POOL_RECYCLE = env_int("DB_POOL_RECYCLE", 3600, -1)
        self.DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 5, 1)
        # Statement timeout protects the worker from a runaway query; 0 disables it.
        self.DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 15000, 0)
        # A transaction left open by a worker that stopped answering (frozen, or cut off from the database by the
        # network) holds its locks, the event log's counter among them, so every write of the service waits on it:
        # PostgreSQL ends such a session after this long. A request's statements follow each other within
        # milliseconds; the streamed exports and the GRUPO_GAD import, which wait on their reader between batches,
        # lift it for their own transaction (db_session.allow_idle_transaction). 0 disables it.
        self.DB_IDLE_IN_TRANSACTION_TIMEOUT_MS = env_int("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 10000, 0)
        # A pooled connection idle longer than this is pinged before use (gad/pg.py); 0 pings every checkout.
        self.DB_PING_AFTER_IDLE_S = env_float("DB_PING_AFTER_IDLE_S", 10.0, 0.0)
        # Hot reads run as server-side prepared statements (gad/pg.py Prepared); turn off behind a pooler in
        # transaction mode (PgBouncer), which hands each transaction a different server connection.
        self.DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
        self.LOG_LEVEL = (env_str("LOG_LEVEL", "INFO") or "INFO").upper()
        self.PORT = env_int("PORT", 8080, 0, 65535)
        self.WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 2, 1)
        # Read by gunicorn.conf.py through this class, so a bad value fails the same way as any other.
        self.WORKER_CONNECTIONS = env_int("WORKER_CONNECTIONS", 10000, 1)
        self.GUNICORN_TIMEOUT = env_int("GUNICORN_TIMEOUT", 30, 1)
        self.GUNICORN_GRACEFUL_TIMEOUT = env_int("GUNICORN_GRACEFUL_TIMEOUT", 20, 1)
        self.MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 1024 * 1024, 1)
        self.ACCESS_TOKEN_EXPIRE_MINUTES = env_int("ACCESS_TOKEN_EXPIRE_MINUTES", 30, 1)
        self.LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5, 1)
        self.LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15, 1)
        self.LOGIN_RATE_LIMIT = env_str("LOGIN_RATE_LIMIT", "20 per minute") or "20 per minute"
        # Lockout is per (e-mail, address); an e-mail attacked from many addresses is slowed instead.
        self.LOGIN_ACCOUNT_MAX_FAILURES = env_int("LOGIN_ACCOUNT_MAX_FAILURES", 20, 1)
        self.LOGIN_ACCOUNT_SLOWDOWN_SECONDS = env_int("LOGIN_ACCOUNT_SLOWDOWN_SECONDS", 10, 1)
        self.LOGIN_TRUSTED_DAYS = env_int("LOGIN_TRUSTED_DAYS", 30, 0)
        # Browser sessions: Keycloak's SSO idle default, and one command-centre shift as the absolute cap.
        self.SESSION_IDLE_MINUTES = env_int("SESSION_IDLE_MINUTES", 30, 1)
        self.SESSION_LIFETIME_HOURS = env_int("SESSION_LIFETIME_HOURS", 12, 1)
        self.PASSWORD_MIN_LENGTH = env_int("PASSWORD_MIN_LENGTH", 10, 1)
        self.PASSWORD_HASH_THREADS = env_int("PASSWORD_HASH_THREADS", 1, 1)
        self.TRUST_PROXY = env_bool("TRUST_PROXY", False)
        self.CORS_ORIGINS = env_list("CORS_ORIGINS")
        self.IDEMPOTENCY_TTL_HOURS = env_int("IDEMPOTENCY_TTL_HOURS", 24, 1)
        self.POSICION_MAX_EDAD_S = env_int("POSICION_MAX_EDAD_S", 900, 1)
        self.EMERGENCIA_RADIO_M = env_int("EMERGENCIA_RADIO_M", 100_000, 1)
        # An efectivo's SOS asks for backup, not for the whole force: a supervisor sends more (gad/policy.py).
        self.EMERGENCIA_EFECTIVOS_AGENTE = env_int("EMERGENCIA_EFECTIVOS_AGENTE", 2, 1, 20)
        # Dispatch prefers efectivos en servicio (inside a turno, not on licencia); true makes it a requirement
        # for cercanos, emergencies and bookings.
        self.DESPACHO_REQUIERE_SERVICIO = env_bool("DESPACHO_REQUIERE_SERVICIO", False)
        # Wall-clock zone of weekly rotas, the planning week and report/CSV times (stored times stay UTC).
        self.ZONA_HORARIA = env_str("ZONA_HORARIA", "Europe/Madrid") or "Europe/Madrid"
        self.CACHE_DEFAULT_TIMEOUT = env_int("CACHE_DEFAULT_TIMEOUT", 60, 0)
        self.METRICS_TOKEN = env_str("METRICS_TOKEN")
        # Under gunicorn with PROMETHEUS_MULTIPROC_DIR the master serves metrics on this private port
        # (fly.toml's [metrics]); 0 turns that server off.
        self.METRICS_PORT = env_int("METRICS_PORT", 9091, 0, 65535)
        self.METRICS_HOST = env_str("METRICS_HOST", "::") or "::"
        # Keys the event log's hash chain (gad.realtime.chain); never stored in the database, so the
        # database's own credentials cannot rewrite history without it showing.
        self.AUDIT_KEY = env_str("AUDIT_KEY")
        # Failed logins and 403s from one source within this many seconds are one event plus a count; 0 keeps every one.
        self.SECURITY_EVENT_WINDOW_S = env_int("SECURITY_EVENT_WINDOW_S", 60)
        self.EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 30, 1)
        self.WS_PING_INTERVAL = env_float("WS_PING_INTERVAL", 25.0, 1.0)
        self.WS_QUEUE_SIZE = env_int("WS_QUEUE_SIZE", 1000, 1)
        self.WS_CLOSE_TIMEOUT = env_float("WS_CLOSE_TIMEOUT", 10.0, 0.1)
        # A websocket write that makes no progress (the client takes and acknowledges nothing) for this long drops
        # the connection; the client resumes with ?since=. Without it a client that stopped reading held its greenlet,
        # socket and buffers until its queue overflowed, hours on a quiet board. The bound is on no progress, not on a
        # frame or a replay: a phone on a slow link taking a long replay progresses all along and is never cut. 60 s
        # is nginx's send_timeout (also "between two successive write operations"), and outlasts a mobile radio's
        # outage of several seconds with TCP's doubling retransmission backoff (1+2+4+8+16 s) after it.
        self.WS_WRITE_TIMEOUT = env_float("WS_WRITE_TIMEOUT", 60.0, 0.1)
        # The largest client message a websocket takes (characters of a text frame, bytes of a binary one);
        # beyond it the socket is closed with 1009. The protocol's largest legitimate frame is a
        # notification_received of 500 ids (about 6 KB): without a limit one logged-in client could make a
        # worker buffer any size it names.
        self.WS_MAX_MESSAGE_SIZE = env_int("WS_MAX_MESSAGE_SIZE", 64 * 1024, 1)
        self.AUTH_CACHE_SECONDS = env_int("AUTH_CACHE_SECONDS", 30, 0)
        # Escalation deadlines per notification causa (and optionally prioridad); see README "Notificaciones".
        self.NOTIF_PLAZOS = parse_deadlines(env_str("NOTIF_PLAZOS", "emergencia=60,asignacion=300") or "")
        self.NOTIF_SWEEP_INTERVAL_S = env_float("NOTIF_SWEEP_INTERVAL_S", 1.0, 0.05)
        self.NOTIF_CANALES = env_list("NOTIF_CANALES") or ["inapp"]
        self.NOTIF_REINTENTOS = env_int("NOTIF_REINTENTOS", 5, 1)
        self.MAP_TILE_URL = env_str("MAP_TILE_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png")
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
        self.SESSION_COOKIE_NAME = "gad_session"
        self.JSON_SORT_KEYS = False

    @property
    def SQLALCHEMY_ENGINE_OPTIONS(self) -> dict[str, Any]:  # noqa: N802 - Flask reads upper-case names
        # Sessions in UTC: instants come back as UTC whatever the server's TimeZone, so a value inside the
        # stored window is never rendered in a zone that pushes it past year 9999.
        options = "-c timezone=UTC"
        # A request's last statement carries its COMMIT (gad.realtime.events._append): if the worker gives up
        # on it (a killed greenlet, a stopped worker) while it waits for the event log's lock, the server must
        # notice the client is gone within a second and roll it back, not commit what the client saw fail.
        # PostgreSQL 14 or later.
        options += " -c client_connection_check_interval=1000"
        if self.DB_STATEMENT_TIMEOUT_MS:
            options += f" -c statement_timeout={self.DB_STATEMENT_TIMEOUT_MS}"
        if self.DB_IDLE_IN_TRANSACTION_TIMEOUT_MS:
            options += f" -c idle_in_transaction_session_timeout={self.DB_IDLE_IN_TRANSACTION_TIMEOUT_MS}"
        connect_args: dict[str, Any] = {"connect_timeout": self.DB_CONNECT_TIMEOUT, "application_name": "gad", "options": options}
        return {
            "pool_size": self.DB_POOL_SIZE,
            "max_overflow": self.DB_MAX_OVERFLOW,
            "pool_timeout": self.DB_POOL_TIMEOUT,
            "pool_recycle": self.DB_POOL_RECYCLE,
            # The connection returned last is handed out first: at ordinary load a few connections stay hot
            # (their statements prepared, no idle ping due) and the rest of the pool sits idle.
            "pool_use_lifo": True,
            # SQLAlchemy's own pre-ping costs a round trip on every checkout; gad.pg pings only connections
            # idle for DB_PING_AFTER_IDLE_S, the ones a proxy or a server restart can have cut.
            "pool_pre_ping": self.DB_PING_AFTER_IDLE_S == 0,
            "connect_args": connect_args,
        }

    @property
    def SOCK_SERVER_OPTIONS(self) -> dict[str, Any]:  # noqa: N802 - flask-sock reads this name
        # flask-sock hands these to simple-websocket's Server for every socket it opens.
        return {"max_message_size": self.WS_MAX_MESSAGE_SIZE}

    def validate(self) -> None:
        """Raise ConfigError for settings that are unusable in every environment."""
        if self.MAX_CONTENT_LENGTH <= 0:
            raise ConfigError("MAX_CONTENT_LENGTH must be positive (bytes), e.g. MAX_CONTENT_LENGTH=1048576")
        if not 0 <= self.METRICS_PORT <= 65535:
            raise ConfigError(f"METRICS_PORT must be a TCP port (0 turns the metrics server off), got {self.METRICS_PORT}")
        if self.DB_POOL_SIZE < 1:
            raise ConfigError("DB_POOL_SIZE must be at least 1")
        try:
            ZoneInfo(self.ZONA_HORARIA)
        except (KeyError, ValueError, OSError):  # unknown zone (a KeyError subclass) or a malformed name
            raise ConfigError(f"ZONA_HORARIA must be an IANA time zone such as Europe/Madrid, got {self.ZONA_HORARIA!r}") from None
        if self.LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {self.LOG_LEVEL!r}")

    def validate_production(self) -> None:
        """Refusals only production makes: a secret that is really secret, a real database, an audit key."""
        key = self.SECRET_KEY
        if not key:
            raise ConfigError(
                "SECRET_KEY is not set: generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'` and set it "
                "(on Fly: `fly secrets set SECRET_KEY=...`)"
            )
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"SECRET_KEY is too short ({len(key)} characters, need at least {MIN_SECRET_KEY_LENGTH}): "
                "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        if key.lower() in PLACEHOLDER_SECRETS:
            raise ConfigError("SECRET_KEY is a known placeholder: generate a random one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
        if not self.SQLALCHEMY_DATABASE_URI:
            raise ConfigError(
                "DATABASE_URL is not set: production needs PostgreSQL, e.g. DATABASE_URL=postgres://user:password@host:5432/gad (on Fly: `fly postgres attach`)"
            )
        _validate_audit_key(self.AUDIT_KEY, key)

    def to_flask(self) -> dict[str, Any]:
        """Every upper-case attribute, including properties, as a mapping for ``app.config``."""
        names = {name for name in dir(self) if name.isupper() and name != "GAD_ENV"}
        return {name: getattr(self, name) for name in names}


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    DEBUG = False  # the reloader and debugger are never wanted under gunicorn

    def __init__(self) -> None:
        super().__init__()
        if self.SECRET_KEY is None:
            self.SECRET_KEY = DEV_SECRET_KEY
        if self.AUDIT_KEY is None:
            self.AUDIT_KEY = DEV_AUDIT_KEY
        # Without DATABASE_URL the app runs on the embedded PostgreSQL under instance/ (see gad/embedded.py).
        self.EMBEDDED_DB_DIR = env_str("EMBEDDED_DB_DIR", str(BASE_DIR / "instance" / "pgdata"))


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True

    def __init__(self) -> None:
        super().__init__()
        if self.SECRET_KEY is None:
            self.SECRET_KEY = "testing-key-" + "x" * 40
        if self.AUDIT_KEY is None:
            self.AUDIT_KEY = DEV_AUDIT_KEY
        test_url = env_database_url("TEST_DATABASE_URL")
        if test_url:
            self.SQLALCHEMY_DATABASE_URI = test_url
        self.LOGIN_RATE_LIMIT = env_str("LOGIN_RATE_LIMIT", "1000 per minute") or "1000 per minute"


class ProductionConfig(Config):
    ENV_NAME = "production"

    def __init__(self) -> None:
        super().__init__()
        self.SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)

    def validate(self) -> None:
        super().validate()
        self.validate_production()


def _validate_audit_key(audit_key: str | None, secret_key: str) -> None:
    how = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'` and set it (on Fly: `fly secrets set AUDIT_KEY=...`)"
    if not audit_key:
        raise ConfigError(f"AUDIT_KEY is not set: the audit chain needs a key kept outside the database; {how}")
    if len(audit_key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"AUDIT_KEY is too short ({len(audit_key)} characters, need at least {MIN_SECRET_KEY_LENGTH}): {how}")
    if audit_key.lower() in PLACEHOLDER_SECRETS or audit_key == DEV_AUDIT_KEY:
        raise ConfigError(f"AUDIT_KEY is a known placeholder: {how}")
    if audit_key == secret_key:
        raise ConfigError(f"AUDIT_KEY must differ from SECRET_KEY (rotating one must not touch the other): {how}")


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(env_name: str | None = None) -> Config:
    """Instantiate and validate the configuration selected by ``GAD_ENV`` (default development)."""
    name = (env_name or env_str("GAD_ENV", "development") or "development").lower()
    try:
        config_class = CONFIGS[name]
    except KeyError:
        raise ConfigError(f"GAD_ENV must be one of {', '.join(CONFIGS)}, got {name!r}") from None
    config = config_class()
    config.validate()
    config.freeze()
    return config
