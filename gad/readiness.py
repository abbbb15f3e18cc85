"""Readiness checks: the database answers within a bound and its schema is at the migrations' head."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg2
from flask import current_app

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
CHECK_TIMEOUT_S = 2


@lru_cache(maxsize=1)
def migration_heads() -> frozenset[str]:
    # Imported here: alembic is heavy and only this probe (and the CLI) needs it.
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def check_database() -> dict[str, Any]:
    """A fresh connection with a 2 s connect and statement timeout: a hung database cannot hang the probe."""
    started = time.perf_counter()
    result: dict[str, Any] = {}
    try:
        conn = psycopg2.connect(
            _plain_dsn(current_app.config["SQLALCHEMY_DATABASE_URI"]),
            connect_timeout=CHECK_TIMEOUT_S,
            options=f"-c statement_timeout={CHECK_TIMEOUT_S * 1000}",
            application_name="gad-readiness",
        )
    except psycopg2.Error as exc:
        return {"database": {"ok": False, "error": type(exc).__name__}, "migrations": {"ok": False, "error": "database unavailable"}}
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            result["database"] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
            try:
                cur.execute("SELECT version_num FROM alembic_version")
                current = {row[0] for row in cur.fetchall()}
            except psycopg2.Error:
                current = set()
            heads = migration_heads()
            at_head = current == set(heads)
            result["migrations"] = {"ok": at_head, "current": sorted(current), "head": sorted(heads)}
    except psycopg2.Error as exc:
        result["database"] = {"ok": False, "error": type(exc).__name__}
        result.setdefault("migrations", {"ok": False, "error": "database unavailable"})
    finally:
        conn.close()
    return result
