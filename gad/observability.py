"""Logging (one JSON line per request, with a request id), and Prometheus metrics at /metrics."""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_flask_exporter import NO_PREFIX, PrometheusMetrics
from sqlalchemy import event, inspect
from sqlalchemy.pool import Pool

from gad import metrics as app_metrics
from gad.errors import Unauthorized
from gad.reqctx import current_g, current_request

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


class _RequestIds:
    """32 hex digits per request: a random 64-bit prefix per process and a counter. As unique as a uuid4 for
    finding a request in the logs, for a tenth of the cost (no system call, no UUID object per request)."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)  # a forked worker must not repeat its parent's ids

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_request_ids = _RequestIds()


def _assign_request_id() -> None:
    # Read from the WSGI environ, not request.headers: the same value without building the headers view.
    incoming = current_request().environ.get("HTTP_X_REQUEST_ID", "")
    g = current_g()
    # Accept the proxy's id only if it is a sane token: it is echoed into logs and headers.
    g.request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else _request_ids.next()
    g.request_started = time.perf_counter()


def _request_hooks(http_metrics: HttpMetrics) -> tuple[Callable[[Response], Response], Callable[[BaseException | None], None]]:
    """The app's after-request and teardown hooks, bound to its HTTP metrics."""

    def finish_request(response: Response) -> Response:
        """The request id header, the HTTP metrics and the access log line in one hook: each hook Flask runs
        costs a lookup and a call per request, and these three share the request id and the clock."""
        g, request = current_g(), current_request()
        request_id = g.get("request_id")
        response.headers[REQUEST_ID_HEADER] = request_id or ""
        started = g.get("request_started")
        elapsed = time.perf_counter() - started if started is not None else None
        http_metrics.record(request.method, request.endpoint, response.status_code, elapsed)
        g.http_recorded = True
        if access_logger.isEnabledFor(logging.INFO):
            # request.path, never request.full_path: query strings may carry tokens (?token=) and must not be logged.
            access_logger.info(
                "request",
                extra={
                    "fields": {
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "duration_ms": round(elapsed * 1000, 2) if elapsed is not None else None,
                        "user_id": _user_id(g.get("current_user")),
                        "request_id": request_id,
                    }
                },
            )
        return response

    def record_exception(exception: BaseException | None) -> None:
        """A request that ended in an exception no handler turned into a response, as the exporter counts it."""
        if exception is None:
            return
        g, request = current_g(), current_request()
        http_metrics.exceptions.labels(request.method, 500).inc()
        if not g.get("http_recorded"):
            started = g.get("request_started")
            http_metrics.record(request.method, request.endpoint, 500, time.perf_counter() - started if started is not None else None)

    return finish_request, record_exception


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


class HttpMetrics:
    """prometheus-flask-exporter's default HTTP metrics — the same names, labels, help texts and buckets as its
    ``export_defaults`` — recorded by GAD's one after-request hook. The exporter's own hooks resolve each
    metric's labelled child on every request (label validation, a lock, three proxy lookups per label);
    here a child is resolved once per (method, endpoint, status) and kept."""

    MAX_CACHED = 2_000  # label sets remembered; clients choose methods, so the cache must not grow without bound

    def __init__(self, metrics: PrometheusMetrics) -> None:
        prefix = metrics._defaults_prefix
        prefix = "" if prefix == NO_PREFIX else prefix + "_"
        group = metrics.group_by
        if not isinstance(group, str) or metrics._default_labels or not metrics._default_latency_as_histogram:
            raise ValueError("HttpMetrics mirrors export_defaults for a named group_by, a histogram and no default labels")
        # As the exporter does: an info metric naming it, once per registry.
        metrics.info(f"{prefix}exporter_info", "Information about the Prometheus Flask exporter", version=metrics.version)
        buckets = {"buckets": metrics.buckets} if metrics.buckets is not None else {}
        registry = metrics.registry
        self.duration = Histogram(
            f"{prefix}http_request_duration_seconds", "Flask HTTP request duration in seconds", ("method", group, "status"), registry=registry, **buckets
        )
        self.total = Counter(f"{prefix}http_request_total", "Total number of HTTP requests", ("method", "status"), registry=registry)
        self.exceptions = Counter(
            f"{prefix}http_request_exceptions_total", "Total number of HTTP requests which resulted in an exception", ("method", "status"), registry=registry
        )
        self._children: dict[tuple[str, Any, int], tuple[Any, Any]] = {}

    def _labelled(self, method: str, group: Any, status: int) -> tuple[Any, Any]:
        key = (method, group, status)
        children = self._children.get(key)
        if children is None:
            children = (self.duration.labels(method, group, status), self.total.labels(method, status))
            if len(self._children) < self.MAX_CACHED:
                self._children[key] = children
        return children

    def record(self, method: str, group: Any, status: int, elapsed: float | None) -> None:
        duration, total = self._labelled(method, group, status)
        if elapsed is not None:
            duration.observe(max(elapsed, 0.0))
        total.inc()


def _init_metrics(app: Flask) -> HttpMetrics:
    # Multi-process mode only inside gunicorn (its on_starting hook prepares the directory and sets the
    # flag): `flask db upgrade` on Fly's release machine and the tests build the app without it. There the
    # gunicorn master serves the sum over all workers on METRICS_PORT (gunicorn.conf.py, when_ready), a
    # port outside Fly's public http_service; the public /metrics exists only when METRICS_TOKEN guards it.
    # export_defaults=False: the same default metrics are made by HttpMetrics and recorded in _finish_request.
    if os.environ.get(MULTIPROCESS_FLAG) and os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not app.testing:
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics, GunicornPrometheusMetrics

        metrics: PrometheusMetrics
        if app.config.get("METRICS_TOKEN"):
            metrics = GunicornInternalPrometheusMetrics(app, path="/metrics", group_by="endpoint", export_defaults=False, metrics_decorator=_metrics_guard(app))
        else:
            metrics = GunicornPrometheusMetrics(app, group_by="endpoint", export_defaults=False)
    else:
        # A registry per app: tests and the CLI build many apps in one process.
        registry = CollectorRegistry(auto_describe=True)
        for collector in app_metrics.ALL:
            registry.register(collector)
        metrics = PrometheusMetrics(app, path="/metrics", registry=registry, group_by="endpoint", export_defaults=False, metrics_decorator=_metrics_guard(app))
    http_metrics = HttpMetrics(metrics)
    metrics.info("gad_app_info", "GAD application", version=app.config["VERSION"])
    app.extensions["gad_metrics"] = metrics
    _track_pool(int(app.config["DB_POOL_SIZE"]))
    return http_metrics


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
    finish_request, record_exception = _request_hooks(_init_metrics(app))
    app.before_request(_assign_request_id)
    app.after_request(finish_request)
    app.teardown_request(record_exception)
