"""Per-process background loop: the notification deadline sweep and outbound channel deliveries.

Every gunicorn worker (on every machine) runs one loop, started like the event listener when the worker
boots. Running it everywhere is safe because PostgreSQL decides who fires each row (``FOR UPDATE SKIP
LOCKED``, see gad.services.notificaciones), and it keeps deadlines running as long as any process is
up; deadlines that passed while none was fire at the first sweep after a start. Between sweeps a loop
sleeps until the next known deadline or ``NOTIF_SWEEP_INTERVAL_S``, whichever comes first.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime

import gevent
from flask import Flask

from gad.extensions import db
from gad.models import utcnow
from gad.services import notificaciones

logger = logging.getLogger(__name__)


def sweep_once() -> tuple[int, datetime | None]:
    """One sweep (inside an app context): escalate everything due, in committed batches, then outbound sends.

    Returns how many were escalated and the next pending deadline.
    """
    handled = 0
    try:
        while True:
            batch = notificaciones.escalate_due()
            db.session.commit()
            handled += batch
            if batch < notificaciones.SWEEP_BATCH:
                break
        notificaciones.deliver_outbound()
        db.session.commit()
        following = notificaciones.next_deadline()
        db.session.commit()
    finally:
        db.session.remove()
    return handled, following


class Sweeper:
    def __init__(self) -> None:
        self._greenlet: gevent.Greenlet | None = None
        self.stopping = False
        self.sweeps = 0

    def ensure_started(self, app: Flask) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self.stopping = False
            self._greenlet = gevent.spawn(self._run, app)

    def stop(self) -> None:
        self.stopping = True

    def _run(self, app: Flask) -> None:
        interval = float(app.config["NOTIF_SWEEP_INTERVAL_S"])
        # Processes that booted together would sweep in lock-step; a random phase spreads them out.
        gevent.sleep(random.uniform(0, interval))
        while not self.stopping:
            pause = interval
            try:
                with app.app_context():
                    handled, following = sweep_once()
                if handled:
                    logger.info("notification sweep escalated %d", handled)
                wait = (following - utcnow()).total_seconds() if following is not None else None
                if wait is not None and wait > 0:
                    # Wake at the next known deadline if it comes before the next tick (a little after it,
                    # so the row is due when read); deadlines written meanwhile are caught by the tick. A
                    # deadline already past is one another process holds right now: the tick is soon enough.
                    pause = min(interval, wait + 0.005)
            except Exception:  # the database may be down: log, and try again at the next tick
                logger.warning("notification sweep failed; retrying", exc_info=True)
            self.sweeps += 1
            gevent.sleep(pause)


sweeper = Sweeper()
