"""Configuration: environment selection, URL normalisation, production refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from config import DEV_AUDIT_KEY, ConfigError, DevelopmentConfig, ProductionConfig, load_config, normalize_database_url
from tests.conftest import ROOT

STRONG_KEY = "k" * 20 + "Zq8-4mX_pL2vR7tY9wE3"
STRONG_AUDIT_KEY = "a" * 20 + "Hn5-2wQ_kT9cB4xM7zJ1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgresql://u:p@h/db?sslmode=require", "postgresql+psycopg2://u:p@h/db?sslmode=require"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_database_url_normalised_to_psycopg2_driver(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_pool_settings_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "4")
    monkeypatch.setenv("DB_POOL_TIMEOUT", "5")
    monkeypatch.setenv("DB_POOL_RECYCLE", "60")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2")
    options = DevelopmentConfig().SQLALCHEMY_ENGINE_OPTIONS
    assert options["pool_size"] == 3 and options["max_overflow"] == 4
    assert options["pool_timeout"] == 5 and options["pool_recycle"] == 60
    # Pinged after idling by gad.pg (tests/test_database.py proves a cut connection never reaches a request);
    # DB_PING_AFTER_IDLE_S=0 asks SQLAlchemy to ping on every checkout instead.
    assert options["pool_pre_ping"] is False
    assert options["connect_args"]["connect_timeout"] == 2
    monkeypatch.setenv("DB_PING_AFTER_IDLE_S", "0")
    assert DevelopmentConfig().SQLALCHEMY_ENGINE_OPTIONS["pool_pre_ping"] is True
    monkeypatch.setenv("DB_PING_AFTER_IDLE_S", "soon")
    with pytest.raises(ConfigError, match="DB_PING_AFTER_IDLE_S"):
        DevelopmentConfig()


def test_pool_defaults_match_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT", "DB_POOL_RECYCLE"):
        monkeypatch.delenv(name, raising=False)
    options = DevelopmentConfig().SQLALCHEMY_ENGINE_OPTIONS
    assert (options["pool_size"], options["max_overflow"], options["pool_timeout"], options["pool_recycle"]) == (30, 0, 30, 3600)


def test_non_integer_setting_is_rejected_with_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "lots")
    with pytest.raises(ConfigError, match="DB_POOL_SIZE"):
        DevelopmentConfig()


@pytest.mark.parametrize(
    ("secret", "db_url", "message"),
    [
        (None, "postgres://h/db", "SECRET_KEY is not set"),
        ("short", "postgres://h/db", "SECRET_KEY is too short"),
        ("please-change-me-in-production-please-change-me", "postgres://h/db", "known placeholder"),
        (STRONG_KEY, None, "DATABASE_URL is not set"),
    ],
)
def test_production_refuses_unsafe_settings(monkeypatch: pytest.MonkeyPatch, secret: str | None, db_url: str | None, message: str) -> None:
    for name, value in (("SECRET_KEY", secret), ("DATABASE_URL", db_url)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_config("production")


@pytest.mark.parametrize(
    ("audit_key", "message"),
    [
        (None, "AUDIT_KEY is not set"),
        ("short", "AUDIT_KEY is too short"),
        (DEV_AUDIT_KEY, "AUDIT_KEY is a known placeholder"),
        (STRONG_KEY, "AUDIT_KEY must differ from SECRET_KEY"),
    ],
)
def test_production_requires_an_audit_key_of_its_own(monkeypatch: pytest.MonkeyPatch, audit_key: str | None, message: str) -> None:
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    if audit_key is None:
        monkeypatch.delenv("AUDIT_KEY", raising=False)
    else:
        monkeypatch.setenv("AUDIT_KEY", audit_key)
    with pytest.raises(ConfigError, match=message):
        load_config("production")


def test_production_accepts_strong_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    monkeypatch.setenv("AUDIT_KEY", STRONG_AUDIT_KEY)
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    config = load_config("production")
    assert isinstance(config, ProductionConfig)
    assert config.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg2://u@h/db"
    assert config.SESSION_COOKIE_SECURE is True


def test_unknown_environment_is_rejected() -> None:
    with pytest.raises(ConfigError, match="GAD_ENV"):
        load_config("staging")


def test_production_start_with_weak_key_exits_with_one_clear_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL"}}
    env.update({"GAD_ENV": "production", "SECRET_KEY": "changeme", "DATABASE_URL": "postgres://u@h/db"})
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "current"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "SECRET_KEY" in lines[0]


def test_gunicorn_refuses_weak_production_key_without_traceback(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL"}}
    env.update({"GAD_ENV": "production", "DATABASE_URL": "postgres://u@h/db", "PORT": "0"})
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    result = subprocess.run([gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_configuration_is_read_only_once_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from config import TestingConfig
    from gad import create_app

    monkeypatch.setenv("GAD_ENV", "development")
    config = load_config()
    with pytest.raises(ConfigError, match="read-only"):
        config.WS_QUEUE_SIZE = 1
    app = create_app(TestingConfig(), overrides={"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg2://u@127.0.0.1:1/x"})
    with pytest.raises(ConfigError, match="read-only"):
        app.config["WS_QUEUE_SIZE"] = 1
    with pytest.raises(ConfigError, match="read-only"):
        app.config.update(LOGIN_RATE_LIMIT="1 per day")
    app.config["DEBUG"] = app.config["DEBUG"]  # re-stating a value (the flask CLI does) changes nothing and is allowed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"MAX_CONTENT_LENGTH": 0}, "MAX_CONTENT_LENGTH must be positive"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be"),
        ({"WS_QUEUE_SIZ": 5}, "unknown settings: WS_QUEUE_SIZ"),
        ({"GAD_ENV": "production", "SECRET_KEY": "changeme"}, "SECRET_KEY is too short"),
    ],
)
def test_overrides_are_validated_like_the_environment(overrides: dict, message: str) -> None:
    from config import TestingConfig
    from gad import create_app

    with pytest.raises(ConfigError, match=message):
        create_app(TestingConfig(), overrides={"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg2://u@127.0.0.1:1/x", **overrides})


BAD_SETTINGS = [
    ("DATABASE_URL", "mysql://u:p@db.example/gad"),
    ("DATABASE_URL", "postgres://u:p@db.example:notaport/gad"),
    ("DATABASE_URL", "::not a url::"),
    ("DATABASE_URL", "postgres://u:p@db.example:99999/gad"),
    ("WEB_CONCURRENCY", "abc"),
    ("WEB_CONCURRENCY", "0"),
    ("WORKER_CONNECTIONS", "many"),
    ("GUNICORN_TIMEOUT", "1.5"),
    ("GUNICORN_GRACEFUL_TIMEOUT", "-1"),
    ("PORT", "http"),
    ("DB_POOL_SIZE", "abc"),
    ("DB_CONNECT_TIMEOUT", "0"),
    ("DB_STATEMENT_TIMEOUT_MS", "15s"),
    ("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "10s"),
    ("MAX_CONTENT_LENGTH", "1MB"),
    ("WS_PING_INTERVAL", "nan"),
    ("AUTH_CACHE_SECONDS", "-5"),
]
# The image's command (Dockerfile CMD), the release command's CLI, and gunicorn itself. gunicorn parses
# WEB_CONCURRENCY with int() when it is imported, before any file of ours runs: that one is caught by
# the image's command only.
COMMANDS = {
    "image": [sys.executable, "-m", "gad.serve"],
    "flask": [sys.executable, "-m", "flask", "--app", "wsgi", "db", "current"],
    "gunicorn": [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
}


@pytest.mark.parametrize(
    ("command", "name", "value"),
    [
        (command, name, value)
        for command in sorted(COMMANDS)
        for name, value in BAD_SETTINGS
        if (command, name, value) != ("gunicorn", "WEB_CONCURRENCY", "abc")
    ],
)
def test_bad_setting_exits_1_with_one_line_naming_the_variable(command: str, name: str, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL", "TEST_DATABASE_URL", "GAD_ENV"}}
    env |= {"GAD_ENV": "production", "SECRET_KEY": STRONG_KEY, "DATABASE_URL": "postgres://u@db.example/gad", "PORT": "0", name: value}
    result = subprocess.run(COMMANDS[command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1, (result.returncode, output)
    assert len(output) == 1 and name in output[0] and "Traceback" not in output[0], output
    assert "u:p@" not in output[0]  # a URL's password is never echoed
