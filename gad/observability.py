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
import weakref
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_flask_exporter import NO_PREFIX, PrometheusMetrics
from sqlalchemy import Engine, inspect
from sqlalchemy.pool import QueuePool

from gad import metrics as app_metrics
from gad.errors import Unauthorized
from gad.reqctx import current_g, current_request, request_or_none

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("gad.access")

REQUEST_ID_HEADER = "X-Request-ID"
MULTIPROCESS_FLAG = "GAD_METRICS_MULTIPROCESS"
_MULTIPROCESS_KEY = "gad_metrics_multiprocess"  # in app.extensions: its metrics are written to the shared directory
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


def new_request_id() -> str:
    """A fresh request id, for an answer written outside a request (gad/rejections.py)."""
    return _request_ids.next()


# Per-request values kept in the WSGI environ (the request's own dict, as WSGI intends for such keys): set and read
# as plain dict items, where ``g`` runs Python code for each.
REQUEST_ID_KEY = "gad.request_id"
CLIENT_REQUEST_ID_KEY = "gad.client_request_id"
STARTED_KEY = "gad.request_started"
RECORDED_KEY = "gad.http_recorded"

Headers = list[tuple[str, str]]
# Adds headers to a response as it leaves: the environ, the header list, and the names already in it (lower case)
# with their values.
HeaderWriter = Callable[[dict[str, Any], Headers, dict[str, str]], None]


class RequestBoundary:
    """WSGI middleware around the Flask app: every request's id and start time, and the headers every response
    gets as it leaves (``X-Request-ID``, and those registered with ``add_header_writer``: the security headers).

    Added here, to the header list werkzeug hands to the server, rather than in an after-request hook: werkzeug
    validates a header as a hook adds it and again as it copies the response's headers for the server, which
    for the five headers every response carries cost more than the rest of ``/health``'s own code
    (docs/BENCHMARKS.md, issue 18's fifth pass). The id and the clock are set before Flask sees the request, so
    logs, events and problem responses can use them from the start.
    """

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app
        self.header_writers: list[HeaderWriter] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # The id is always ours: it is the key the audit trail (eventos.request_id) and the logs share, and any
        # client could send another request's. A client's own id, if it is a sane token, is logged beside ours.
        request_id = environ[REQUEST_ID_KEY] = _request_ids.next()
        incoming = environ.get("HTTP_X_REQUEST_ID")
        if incoming and _VALID_REQUEST_ID.match(incoming):
            environ[CLIENT_REQUEST_ID_KEY] = incoming
        environ[STARTED_KEY] = time.perf_counter()
        writers = self.header_writers

        def start(status: str, headers: Headers, exc_info: Any = None) -> Any:
            present = {name.lower(): value for name, value in headers}
            for write in writers:
                write(environ, headers, present)
            if "x-request-id" in present:  # ours replaces any other
                headers[:] = [header for header in headers if header[0].lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


def add_header_writer(app: Flask, writer: HeaderWriter) -> None:
    """Have ``writer`` add headers to every response of ``app`` as it leaves (after every after-request hook)."""
    boundary = app.extensions["gad_boundary"]
    boundary.header_writers.append(writer)


def _request_hooks(http_metrics: HttpMetrics) -> tuple[Callable[[Response], Response], Callable[[BaseException | None], None]]:
    """The app's after-request and teardown hooks, bound to its HTTP metrics."""

    def finish_request(response: Response) -> Response:
        """The HTTP metrics and the access log line in one hook: each hook Flask runs costs a lookup and a call
        per request, and the two share the clock."""
        request = current_request()
        environ = request.environ
        started = environ.get(STARTED_KEY)
        elapsed = time.perf_counter() - started if started is not None else None
        http_metrics.record(request.method, request.endpoint, response.status_code, elapsed)
        environ[RECORDED_KEY] = True
        if access_logger.isEnabledFor(logging.INFO):
            # request.path, never request.full_path: query strings may carry tokens (?token=) and must not be logged.
            fields = {
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2) if elapsed is not None else None,
                "user_id": _user_id(current_g().get("current_user")),
                "request_id": environ.get(REQUEST_ID_KEY),
            }
            client_request_id = environ.get(CLIENT_REQUEST_ID_KEY)
            if client_request_id is not None:
                fields["client_request_id"] = client_request_id
            access_logger.info("request", extra={"fields": fields})
        return response

    def record_exception(exception: BaseException | None) -> None:
        """A request that ended in an exception no handler turned into a response, as the exporter counts it."""
        if exception is None:
            return
        request = current_request()
        http_metrics.exceptions.labels(http_metrics.method_label(request.method), 500).inc()
        if not request.environ.get(RECORDED_KEY):
            started = request.environ.get(STARTED_KEY)
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
    request = request_or_none()
    if request is None:  # outside a request (CLI, the background sweeper)
        return None
    request_id: str | None = request.environ.get(REQUEST_ID_KEY)
    return request_id


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
    # Clients choose the method too, and each one made up (405) became a new series in the registry, the
    # multi-process files and every scrape: 20,000 made-up methods grew a worker by 70 MB and a scrape to 24 MB.
    METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

    @classmethod
    def method_label(cls, method: str) -> str:
        return method if method in cls.METHODS else "other"

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

    def record(self, method: str, group: Any, status: int, elapsed: float | None) -> None:
        key = (method, group, status)
        children = self._children.get(key)
        if children is None:
            label = self.method_label(method)
            children = (self.duration.labels(label, group, status), self.total.labels(label, status))
            if len(self._children) < self.MAX_CACHED:
                self._children[key] = children
        duration, total = children
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
        app.extensions[_MULTIPROCESS_KEY] = True
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
    _track_pool(app)
    return http_metrics


# Every app's engine in this process (tests and the command line build several): the gauges sum their pools. The
# engine, not its pool: Engine.dispose() replaces the pool, and the new one must be counted too.
_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
# How often a gunicorn worker writes its pool's gauges for the master's scrape (multi-process mode).
POOL_SAMPLE_INTERVAL_S = 1.0


def _pools() -> list[QueuePool]:
    # The pool config.py's engine options make; another kind keeps no such count.
    return [pool for engine in list(_engines) if isinstance(pool := engine.pool, QueuePool)]


def _pool_checked_out() -> float:
    return float(sum(pool.checkedout() for pool in _pools()))


def _pool_overflow() -> float:
    return float(sum(max(0, pool.checkedout() - pool.size()) for pool in _pools()))


def _track_pool(app: Flask) -> None:
    """The pool gauges, read from the pool itself when they are collected.

    They used to follow SQLAlchemy's checkout and checkin events: four listener calls and two gauge writes
    around every request that touched the database (34 k instructions of a create, 1.6 %; in multi-process
    mode each write also went to the worker's file). In one process the scrape now asks the pool; under
    gunicorn, where the master reads only what workers wrote, ``sample_pool`` writes them once a second."""
    from gad.extensions import db

    with app.app_context():
        _engines.add(db.engine)
    app_metrics.DB_POOL_CHECKED_OUT.set_function(_pool_checked_out)
    app_metrics.DB_POOL_OVERFLOW.set_function(_pool_overflow)


def sample_pool(app: Flask) -> None:
    """In a gunicorn worker in multi-process mode, write the pool gauges every ``POOL_SAMPLE_INTERVAL_S`` (a
    greenlet for the worker's life); elsewhere nothing, as the scrape reads the pool itself."""
    if not app.extensions.get(_MULTIPROCESS_KEY):
        return
    import gevent

    def sample_forever() -> None:
        while True:
            app_metrics.DB_POOL_CHECKED_OUT.set(_pool_checked_out())
            app_metrics.DB_POOL_OVERFLOW.set(_pool_overflow())
            gevent.sleep(POOL_SAMPLE_INTERVAL_S)

    gevent.spawn(sample_forever)


def init_app(app: Flask) -> None:
    finish_request, record_exception = _request_hooks(_init_metrics(app))
    boundary = RequestBoundary(app.wsgi_app)
    app.wsgi_app = boundary  # type: ignore[method-assign]  # Flask's documented way to add WSGI middleware
    app.extensions["gad_boundary"] = boundary
    app.after_request(finish_request)
    app.teardown_request(record_exception)
