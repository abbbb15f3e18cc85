"""gunicorn settings: gevent workers on $PORT; psycopg2 made cooperative in each worker before it connects."""

import gc
import os
import sys

from config import ConfigError, load_config

# Every setting is read and validated by config.py before gunicorn uses any of it: a bad value
# (WEB_CONCURRENCY=abc, DATABASE_URL=mysql://...) stops the master with one line naming the variable,
# exit status 1, instead of a traceback here or workers that fail to boot (exit 3).
try:
    _settings = load_config()
except ConfigError as exc:
    sys.exit(f"GAD configuration error: {exc}")

bind = f"0.0.0.0:{_settings.PORT}"
worker_class = "gevent"
workers = _settings.WEB_CONCURRENCY
# Each websocket holds a connection; leave room for them beside ordinary requests.
worker_connections = _settings.WORKER_CONNECTIONS
timeout = _settings.GUNICORN_TIMEOUT
graceful_timeout = _settings.GUNICORN_GRACEFUL_TIMEOUT
keepalive = 5
# What one request's head may hold before gunicorn refuses it (gunicorn's defaults, named here because the README
# documents them and they bound what a worker buffers per connection): the request line (414), the number of
# header fields and the size of each (431). gad/rejections.py answers those refusals as problem+json.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
# No preload_app: with gevent, locks created at import time before monkey-patching become real OS locks.
preload_app = False
accesslog = None  # the app writes one JSON line per request itself
errorlog = "-"
loglevel = _settings.LOG_LEVEL.lower()
# gunicorn 27 opens a control socket at one path per user (~/.gunicorn/gunicorn.ctl): every gunicorn this
# user starts on the machine (the test suite starts dozens) would fight over it. Nothing in GAD or Fly
# uses it (graceful stop is SIGTERM, scaling is WEB_CONCURRENCY), so none is opened.
control_socket_disable = True
forwarded_allow_ips = "*" if _settings.TRUST_PROXY else "127.0.0.1"


def post_fork(server, worker):
    # Until gunicorn sets the worker's own signal handlers (after this hook), the child has the master's, which
    # queue the signal in the child's copy of the master's state: a stop sent while this hook imports gad.pg (and
    # SQLAlchemy, a good part of a boot) was lost, and the master waited out the graceful timeout before killing
    # the worker. Marked as not alive now, the worker stops as soon as it has booted (its run loop checks).
    import signal

    def stop_once_booted(sig, frame):
        worker.alive = False

    stops = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
    for stop in stops:
        signal.signal(stop, stop_once_booted)
    # One that came between the fork and the lines above is in this child's copy of the master's queue.
    import queue

    while True:
        try:
            if server.SIG_QUEUE.get_nowait() in stops:
                worker.alive = False
        except queue.Empty:
            break

    # No cyclic garbage collection while the worker imports the application (post_worker_init turns it back
    # on): each collection walks every object allocated so far, and the import builds well over 100,000 that
    # live as long as the process, so the collector's passes over them cost ~10 % of a worker's start-up
    # CPU (docs/BENCHMARKS.md) and found little to free.
    gc.disable()

    # The gevent worker has monkey-patched the stdlib by now; psycopg2 talks to libpq in C and must be told
    # to yield to the hub while waiting on the socket, or one slow query blocks every greenlet of the worker.
    # GAD's callback (psycogreen's, plus deadlines) also bounds a wait on a frozen server: see gad/pg.py.
    from gad.pg import install_wait_callback

    install_wait_callback()

    # On SIGTERM gunicorn stops accepting and lets in-flight requests finish; websockets would keep the
    # worker alive until the graceful timeout, so close them at once with 1001 (clients resume elsewhere).
    stop_accepting = worker.handle_exit

    def handle_exit(sig, frame):
        if not worker.booted:
            # Still importing the app (a stop right after a start): the hub and the sweeper have not started, and
            # importing them from inside that import failed as a circular import, a boot error that halted the master
            # with status 1. Not alive any more, the worker stops as soon as the app is loaded.
            stop_accepting(sig, frame)
            return
        import gevent

        from gad.realtime.hub import hub

        # Read now, in the signal handler: how many connections the kernel had accepted for us so far.
        queued = [(listener, _accept_queue_length(listener)) for listener in worker.sockets]
        gevent.spawn(hub.shutdown)
        from gad.background import sweeper

        sweeper.stop()
        gevent.spawn(_answer_accept_queue, worker, queued, stop_accepting, sig, frame)

    worker.handle_exit = handle_exit

    quit_now = worker.handle_quit

    def handle_quit(sig, frame):
        # Ctrl-C reaches the whole process group: the worker gets SIGINT from the terminal and SIGQUIT from the
        # master, and the second sys.exit landed in the interpreter's own shutdown, printed as a traceback.
        if not getattr(worker, "gad_quitting", False):
            worker.gad_quitting = True
            quit_now(sig, frame)

    worker.handle_quit = handle_quit


# The master closes its copy of the listening socket at once on SIGTERM, and gunicorn's gevent worker closes
# its own within a second; when the last copy closes, the kernel resets every connection still waiting in
# the accept queue, though it completed their handshakes before the signal. A worker busy on the CPU when
# the signal came had not accepted them, and gevent's accept loop takes one per turn with several workers.
# So each worker, before it stops accepting, takes what was queued at the signal (no more: a machine under
# steady load must still stop) and answers it like any request in flight (with Connection: close).
_MAX_DRAIN = 4096


def _accept_queue_length(listener):
    import socket
    import struct

    try:
        # Linux: for a listening socket, tcp_info.tcpi_unacked is the accept queue's current length.
        info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return struct.unpack_from("I", info, 24)[0]
    except (OSError, AttributeError, struct.error):  # not TCP (a unix socket) or not Linux: take what is there
        return _MAX_DRAIN


def _answer_accept_queue(worker, queued, stop_accepting, sig, frame):
    import _socket
    import os
    import socket as stdlib_socket

    import gevent.pool

    pool = worker.gad_drained = gevent.pool.Pool()
    for listener, count in queued:
        # A duplicate descriptor of the listener, accepted from without waiting (the descriptor is already
        # non-blocking under gevent): it stops at an empty queue instead of waiting for the next client.
        raw = _socket.socket(fileno=os.dup(listener.fileno()))
        try:
            for _ in range(count):
                try:
                    fd, addr = raw._accept()
                except (BlockingIOError, InterruptedError):
                    break
                client = stdlib_socket.socket(listener.family, listener.type, fileno=fd)  # gevent's, after patching
                pool.spawn(worker.handle, listener, client, addr)
        finally:
            raw.close()
    stop_accepting(sig, frame)


def post_worker_init(worker):
    if not worker.alive:
        return  # told to stop while booting: it stops now, with nothing started to stop
    # A request gunicorn rejects before the app sees it (a URI past limit_request_line, a header past
    # limit_request_field_size, a malformed request line…) is answered as problem+json with gunicorn's status,
    # instead of gunicorn's HTML page. The limits stay: they bound what a worker buffers. Only the error path runs it.
    from gad.rejections import install

    install(worker)

    # Every worker listens for committed events from boot: websockets need them, and so does the cache of
    # recently verified tokens, which is only used while this listener is connected (it drops the cache
    # when a usuario or security event arrives). Not waited for: a worker must boot with PostgreSQL down.
    app = worker.wsgi
    if "sqlalchemy" in getattr(app, "extensions", {}):
        from gad.realtime.hub import hub

        hub.ensure_started(app.config["SQLALCHEMY_DATABASE_URI"], wait=False)
        # Every worker also sweeps notification deadlines; the database decides who fires (gad/background.py).
        from gad.background import sweeper

        sweeper.ensure_started(app)
        # In multi-process mode the master scrapes only what workers write: the pool gauges, once a second.
        from gad.observability import sample_pool

        sample_pool(app)
    # What the worker has loaded so far (modules, mappers, schemas: ~115,000 objects) lives as long as the
    # process. Left to the cyclic collector, each of its full passes walks them all and stops every
    # greenlet of the worker for 50 ms or more; frozen, the collector only looks at what requests create.
    # The collector was off while the worker imported the app (post_fork): on again from here. The few
    # import-time cycles it would have freed (~0.5 MB) stay with the frozen objects.
    gc.freeze()
    gc.enable()


def post_request(worker, req, environ, resp):
    # A gevent greenlet only yields when its socket would block. On a keep-alive connection whose client
    # already sent the next request it never does, so a few busy connections starve the rest: with 64
    # clients the p99 of a trivial endpoint was 300 ms against a 16 ms median. One yield per request
    # makes the worker round-robin (p99 ~35 ms) for a few microseconds (bench.stack_floor).
    import gevent

    gevent.sleep(0)


def worker_exit(server, worker):
    # Connections taken from the accept queue at SIGTERM are not in gevent's server pool, which gunicorn
    # waited for: let them finish too, within the graceful timeout.
    drained = getattr(worker, "gad_drained", None)
    if drained is not None:
        drained.join(timeout=worker.cfg.graceful_timeout)
    # Give PostgreSQL its connections back before the process goes away.
    app = getattr(worker, "wsgi", None)
    if app is not None and "sqlalchemy" in getattr(app, "extensions", {}):
        from gad.extensions import db

        with app.app_context():
            db.engine.dispose()
    # A clean exit ends here, as a child of fork() should end (os._exit), once its logs are out: tearing the
    # interpreter down adds nothing a worker needs and, under gevent, printed "Exception ignored in
    # _removeHandlerRef ... TypeError" at every stop (a logging handler collected after gevent's thread module was
    # cleared, gevent issue 2148), which reads as a crash in the logs of every deploy. Any other exit (a boot
    # error's status, which the master acts on) is left to Python with its code.
    leaving = sys.exc_info()[1]
    if isinstance(leaving, SystemExit) and leaving.code in (0, None):
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

        GunicornPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)


def when_ready(server):
    # prometheus-flask-exporter's gunicorn mode: the master, once ready, serves the samples every worker
    # writes under PROMETHEUS_MULTIPROC_DIR, summed, from its own port. Fly scrapes that port over its
    # private network ([metrics] in fly.toml); it is not part of the public http_service.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from config import load_config

    config = load_config()
    if not config.METRICS_PORT:
        return
    from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

    try:
        GunicornPrometheusMetrics.start_http_server_when_ready(config.METRICS_PORT, config.METRICS_HOST)
    except OSError as exc:  # metrics must not take the service down with them
        server.log.error("metrics server could not listen on [%s]:%s: %s", config.METRICS_HOST, config.METRICS_PORT, exc)
    else:
        server.log.info("metrics on [%s]:%s/metrics", config.METRICS_HOST, config.METRICS_PORT)


def on_starting(server):
    # Prometheus multi-process mode: every worker writes its samples under this directory and any worker's
    # /metrics sums them. Start empty so counters from a previous run are not resurrected.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
        os.environ["GAD_METRICS_MULTIPROCESS"] = "1"
