"""The request log: one JSON line per request, with the request id, and no secrets."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

from tests.builders import Builders
from tests.conftest import start_gunicorn, stop_gunicorn


@pytest.mark.slow
def test_request_log_is_one_json_line_with_request_id_and_no_secrets(database_url: str, tmp_path: Path, build: Builders) -> None:
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path, extra_env={"LOG_LEVEL": "INFO"})
    try:
        user = build.usuario(2)
        token = build.token(user)
        echoed = requests.get(server.url + "/api/v1/users/me", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "proxy-req-42"}, timeout=10)
        ours = echoed.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", ours)  # the client's id is logged beside ours, never taken as ours
        generated = requests.get(server.url + "/health?token=super-secret-query", timeout=10).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        requests.post(server.url + "/api/v1/auth/login", json={"email": user.email, "password": "hunter2-hunter2"}, timeout=10)
        time.sleep(0.5)
        log = server.log()
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"gad.access"' in line]
        me = next(line for line in lines if line.get("request_id") == ours)
        assert me["client_request_id"] == "proxy-req-42"
        assert me["method"] == "GET" and me["path"] == "/api/v1/users/me" and me["status"] == 200 and me["user_id"] == user.id and me["duration_ms"] >= 0
        for secret in (token, "super-secret-query", "hunter2-hunter2"):
            assert secret not in log
    finally:
        stop_gunicorn(server)
