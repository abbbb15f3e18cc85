"""Application metrics beyond HTTP (which prometheus-flask-exporter records).

Defined once per process and unregistered: ``gad.observability`` registers them in each app's registry,
and in gunicorn multi-process mode prometheus_client writes them to PROMETHEUS_MULTIPROC_DIR so one
scrape of any worker returns the sum over all workers.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

# With PROMETHEUS_MULTIPROC_DIR set (it is, in the Docker image) prometheus_client backs every sample
# with a file in that directory. The release machine's `flask db upgrade` has no gunicorn to create it,
# so make sure it exists before the first metric is built instead of crashing the deploy.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

WEBSOCKETS_OPEN = Gauge("gad_websockets_open", "Open websocket connections", registry=None, multiprocess_mode="livesum")
WEBSOCKETS_DROPPED = Counter(
    "gad_websockets_dropped_total",
    "Websocket connections dropped without a close frame: a write made no progress within WS_WRITE_TIMEOUT (reason"
    ' "write_stalled"), or the close frame was not taken within WS_CLOSE_TIMEOUT ("close_timeout")',
    ["reason"],
    registry=None,
)
# Both reasons exist from the start at 0: a series that first appears at 1 is invisible to increase() and rate().
for _reason in ("write_stalled", "close_timeout"):
    WEBSOCKETS_DROPPED.labels(_reason)
EVENTS_WRITTEN = Counter("gad_events_written_total", "Events appended to the event log", registry=None)
EVENTS_DELIVERED = Counter("gad_events_delivered_total", "Event frames sent to websocket clients", registry=None)
COMMIT_TO_SEND = Histogram(
    "gad_event_commit_to_send_seconds",
    "Time from an event's commit until a worker's fan-out had written it to every socket that took it at once"
    " (one observation per event and worker), or until a queued frame was written (one per frame)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=None,
)
AUTH_CACHE_HITS = Counter("gad_auth_cache_hits_total", "Requests whose token a recent verification served, without a query of its own", registry=None)
LOGIN_FAILURES = Counter("gad_login_failures_total", "Failed login attempts", registry=None)
EMERGENCIES_UNASSIGNED = Counter("gad_emergencies_unassigned_total", "Emergencies created with nobody available", registry=None)
DB_POOL_CHECKED_OUT = Gauge("gad_db_pool_checked_out", "Database connections in use", registry=None, multiprocess_mode="livesum")
DB_POOL_OVERFLOW = Gauge("gad_db_pool_overflow", "Connections opened beyond the pool size", registry=None, multiprocess_mode="livesum")

ALL = (
    WEBSOCKETS_OPEN,
    WEBSOCKETS_DROPPED,
    EVENTS_WRITTEN,
    EVENTS_DELIVERED,
    COMMIT_TO_SEND,
    AUTH_CACHE_HITS,
    LOGIN_FAILURES,
    EMERGENCIES_UNASSIGNED,
    DB_POOL_CHECKED_OUT,
    DB_POOL_OVERFLOW,
)
