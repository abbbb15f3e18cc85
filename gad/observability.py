"""Logging (one JSON line per request, with a request id), and Prometheus metrics at /metrics."""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import sys
import time
import uuid
from functools import wraps
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics
from sqlalchemy import event, inspect
from sqlalchemy.pool import Pool

from gad import metrics as app_metrics
from gad.errors import Unauthorized

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("gad.access")

REQUEST_ID_HEADER = "X-Request-ID"
MULTIPROCESS_FLAG = "GAD_METRICS_MULTIPROCESS"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy to grep on Fly, easy to ship anywhere."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(app: Flask) -> None:
    level = app.config.get("LOG_LEVEL", "INFO")
    root = logging.getLogger()
    if not any(getattr(handler, "_gad", False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        handler._gad = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # Alembic announces every plugin at INFO; keep CLI output readable.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _assign_request_id() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    # Accept the proxy's id only if it is a sane token: it is echoed into logs and headers.
    g.request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _log_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
    user = g.get("current_user")
    # request.path, never request.full_path: query strings may carry tokens (?token=) and must not be logged.
    access_logger.info(
        "request",
        extra={
            "fields": {
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration_ms,
                "user_id": _user_id(user),
                "request_id": g.get("request_id"),
            }
        },
    )
    return response


def _user_id(user: Any) -> Any:
    """The usuario's id from its identity key: after a rollback (database down, say) the object is
    expired, and reading ``user.id`` would query the database again, fail, and lose this log line."""
    if user is None:
        return None
    state = inspect(user, raiseerr=False)
    if state is not None and state.identity:
        return state.identity[0]
    return getattr(user, "id", None)


def current_request_id() -> str | None:
    try:
        return g.get("request_id")
    except RuntimeError:  # outside a request (CLI)
        return None


def _metrics_guard(app: Flask) -> Any:
    """With METRICS_TOKEN set, /metrics answers only ``Authorization: Bearer <METRICS_TOKEN>``."""
    token = app.config.get("METRICS_TOKEN")

    def decorator(view: Any) -> Any:
        if not token:
            return view

        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(sent.encode(), token.encode()):
                raise Unauthorized("/metrics requires the METRICS_TOKEN bearer token.")
            return view(*args, **kwargs)

        return guarded

    return decorator


def _init_metrics(app: Flask) -> None:
    # Multi-process mode only inside gunicorn (its on_starting hook prepares the directory and sets the
    # flag): `flask db upgrade` on Fly's release machine and the tests build the app without it. There the
    # gunicorn master serves the sum over all workers on METRICS_PORT (gunicorn.conf.py, when_ready), a
    # port outside Fly's public http_service; the public /metrics exists only when METRICS_TOKEN guards it.
    if os.environ.get(MULTIPROCESS_FLAG) and os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not app.testing:
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics, GunicornPrometheusMetrics

        metrics: PrometheusMetrics
        if app.config.get("METRICS_TOKEN"):
            metrics = GunicornInternalPrometheusMetrics(app, path="/metrics", group_by="endpoint", metrics_decorator=_metrics_guard(app))
        else:
            metrics = GunicornPrometheusMetrics(app, group_by="endpoint")
    else:
        # A registry per app: tests and the CLI build many apps in one process.
        registry = CollectorRegistry(auto_describe=True)
        for collector in app_metrics.ALL:
            registry.register(collector)
        metrics = PrometheusMetrics(app, path="/metrics", registry=registry, group_by="endpoint", metrics_decorator=_metrics_guard(app))
    metrics.info("gad_app_info", "GAD application", version=app.config["VERSION"])
    app.extensions["gad_metrics"] = metrics
    _track_pool(int(app.config["DB_POOL_SIZE"]))


_pool_state = {"checked_out": 0, "size": 10, "hooked": False}


def _track_pool(pool_size: int) -> None:
    """Pool usage gauges, from SQLAlchemy's pool events (summed across workers in multi-process mode)."""
    _pool_state["size"] = pool_size
    if _pool_state["hooked"]:
        return
    _pool_state["hooked"] = True

    @event.listens_for(Pool, "checkout")
    def _checkout(*_: object) -> None:
        _pool_state["checked_out"] += 1
        app_metrics.DB_POOL_CHECKED_OUT.set(_pool_state["checked_out"])
        app_metrics.DB_POOL_OVERFLOW.set(max(0, _pool_state["checked_out"] - _pool_state["size"]))

    @event.listens_for(Pool, "checkin")
    def _checkin(*_: object) -> None:
        _pool_state["checked_out"] = max(0, _pool_state["checked_out"] - 1)
        app_metrics.DB_POOL_CHECKED_OUT.set(_pool_state["checked_out"])
        app_metrics.DB_POOL_OVERFLOW.set(max(0, _pool_state["checked_out"] - _pool_state["size"]))


def init_app(app: Flask) -> None:
    app.before_request(_assign_request_id)
    app.after_request(_log_request)
    _init_metrics(app)
