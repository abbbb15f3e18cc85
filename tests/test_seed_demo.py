"""`flask gad seed-demo` in production: refused unless forced, and then never with the published password."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg2
import requests

from gad.commands.seed import DEMO_PASSWORD
from tests.conftest import ROOT, LiveServer


def _seed(database_url: str, *args: str, env_name: str = "production") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"TEST_DATABASE_URL"}}
    env |= {"GAD_ENV": env_name, "DATABASE_URL": database_url, "SECRET_KEY": "prod-" + "Zk3-q9Lm_Wx7" * 4, "AUDIT_KEY": "audit-" + "Qw7-Zp3_Lk9x" * 4}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "gad", "seed-demo", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_seed_demo_refuses_production_and_forced_never_uses_the_published_password(live_server: LiveServer, database_url: str) -> None:
    refused = _seed(database_url)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "production" in lines[0] and "--force" in lines[0], refused.stderr
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM usuarios")
        assert cur.fetchone() == (0,)
    conn.close()

    forced = _seed(database_url, "--force")
    assert forced.returncode == 0, forced.stderr
    assert DEMO_PASSWORD not in forced.stdout
    password = forced.stdout.strip().rsplit(" ", 1)[1]
    login = live_server.url + "/api/v1/auth/login"
    assert requests.post(login, json={"email": "admin@gad.local", "password": DEMO_PASSWORD}, timeout=30).status_code == 401
    assert requests.post(login, json={"email": "admin@gad.local", "password": password}, timeout=30).status_code == 200


def test_forced_seed_in_production_replaces_a_published_password_left_from_before(live_server: LiveServer, database_url: str) -> None:
    assert _seed(database_url, env_name="development").returncode == 0  # e.g. a development database promoted
    login = live_server.url + "/api/v1/auth/login"
    assert requests.post(login, json={"email": "admin@gad.local", "password": DEMO_PASSWORD}, timeout=30).status_code == 200
    forced = _seed(database_url, "--force")
    assert forced.returncode == 0, forced.stderr
    password = forced.stdout.strip().rsplit(" ", 1)[1]
    for email in ("admin@gad.local", "supervisor@gad.local", "efectivo@gad.local"):
        assert requests.post(login, json={"email": email, "password": DEMO_PASSWORD}, timeout=30).status_code == 401
        assert requests.post(login, json={"email": email, "password": password}, timeout=30).status_code == 200
