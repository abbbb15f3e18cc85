"""Metrics: one scrape sums every worker; the CLI works without the multiprocess directory."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.builders import Builders
from tests.conftest import ROOT, start_gunicorn, stop_gunicorn


def _scrape(url: str, **headers: str) -> str:
    return requests.get(url + "/metrics", headers=headers, timeout=10).text


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
def test_one_scrape_sums_metrics_over_two_workers(database_url: str, tmp_path: Path, build: Builders) -> None:
    server = start_gunicorn(
        database_url, workers=2, tmp=tmp_path, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_TOKEN": "scrape-secret"}
    )
    try:
        user = build.usuario(1)
        auth = {"Authorization": "Bearer scrape-secret"}
        before = _sample(_scrape(server.url, **auth), "flask_http_request_duration_seconds_count", endpoint="health.health")
        with ThreadPoolExecutor(8) as pool:  # enough concurrency that both workers serve some
            list(pool.map(lambda _: requests.get(server.url + "/health", timeout=10), range(60)))
        requests.post(server.url + "/api/v1/auth/login", json={"email": user.email, "password": "wrong-password!"}, timeout=10)
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
        pids = set()
        for _ in range(6):  # whichever worker answers the scrape, it reports the sum over both
            text = _scrape(server.url, **auth)
            pids.add(len(list((tmp_path / "prom").glob("histogram_*.db"))))
            assert _sample(text, "flask_http_request_duration_seconds_count", endpoint="health.health", method="GET", status="200") == before + 60
            assert _sample(text, "gad_login_failures_total") == 1
        assert max(pids) >= 2  # samples from both worker processes were summed
        assert "gad_websockets_open" in text and "gad_db_pool_checked_out" in text and "gad_event_commit_to_send_seconds" in text
    finally:
        stop_gunicorn(server)


def test_cli_builds_without_the_multiprocess_directory(database_url: str, tmp_path: Path) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "absent")}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "current"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
