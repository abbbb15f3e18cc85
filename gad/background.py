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


def sweep_once() -> tuple[int, datetime | None, datetime]:
    """One sweep (inside an app context): escalate everything due, in committed batches, then outbound sends.

    Returns how many were escalated, the next pending deadline, and the instant the sweep looked from.
    """
    started = utcnow()
    handled = 0
    try:
        while True:
            batch = notificaciones.escalate_due(now=started)
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
    return handled, following, started


def pause_after(interval: float, following: datetime | None, started: datetime) -> float:
    """How long to sleep before the next sweep.

    A deadline after ``started`` was not due when this sweep looked: wake right after it (if it comes before
    the next tick). One at or before ``started`` was due but another process holds its row: the tick is soon
    enough, and waking at once would only spin while that process works.
    """
    if following is None or following <= started:
        return interval
    return min(interval, max((following - utcnow()).total_seconds() + 0.005, 0.005))


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
                    handled, following, started = sweep_once()
                if handled:
                    logger.info("notification sweep escalated %d", handled)
                pause = pause_after(interval, following, started)
            except Exception:  # the database may be down: log, and try again at the next tick
                logger.warning("notification sweep failed; retrying", exc_info=True)
            self.sweeps += 1
            gevent.sleep(pause)


sweeper = Sweeper()
