"""Liveness (/health, never touches the database) and readiness (/health/ready) for Fly's checks."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from flask import Blueprint, Response

from gad import __version__
from gad.blueprints.http import json_response
from gad.extensions import limiter
from gad.openapi import documented
from gad.readiness import check_database
from gad.schemas.common import Health, Readiness

bp = Blueprint("health", __name__)
_STARTED = time.monotonic()
_VERSION = json.dumps(__version__)


@bp.get("/health")
@limiter.exempt
@documented(tags=("health",), resp={"HTTP_200": Health}, public=True)
def health() -> Response:
    # The Health schema documents this body; it is written directly because Fly and load balancers call it
    # every few seconds on every worker, and validating four fields cost more than the rest of the view.
    # The same text json.dumps would produce (tests/test_health.py parses it against the schema).
    uptime = round(time.monotonic() - _STARTED, 3)
    body = f'{{"status": "ok", "timestamp": "{datetime.now(UTC).isoformat()}", "uptime": {uptime!r}, "version": {_VERSION}}}'
    return Response(body, mimetype="application/json")


@bp.get("/health/ready")
@limiter.exempt
@documented(tags=("health",), resp={"HTTP_200": Readiness, "HTTP_503": Readiness}, public=True)
def ready() -> Response:
    checks = check_database()
    ok = all(check.get("ok") for check in checks.values())
    return json_response(Readiness(status="ready" if ok else "unavailable", checks=checks), status=200 if ok else 503)
