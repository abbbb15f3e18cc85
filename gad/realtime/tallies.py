"""Repeated security events (same kind, same source, within a short window) kept as one row with a count.

Every 403 and failed login used to append its own event: an anonymous client could grow the log at will.
Now the first occurrence of a (kind, source) in a window is written as an event at once (administradores
see it live), later ones only increment a tally row (``security_tallies``), and when the window has ended
the tally becomes one ``security_events_aggregated`` event with the count, the first and last time and
up to ten distinct samples (e-mails tried, paths refused). So the log holds at most two rows per source
and window; nothing that matters is dropped, only repetitions folded. Windows are closed by whichever
security event is recorded next (any kind, any source), in that event's transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

from gad.schemas.events import SecurityEventsAggregated

MAX_SAMPLES = 10

_COUNT = text(
    """
    INSERT INTO security_tallies AS t (kind, source, actor_id, count, samples, window_start, window_end, last_at)
    VALUES (:kind, :source, :actor_id, 1, jsonb_build_array(CAST(:sample AS text)), now(), now() + make_interval(secs => :window_s), now())
    ON CONFLICT (kind, source) DO UPDATE SET
        count = t.count + 1,
        last_at = now(),
        samples = CASE WHEN jsonb_array_length(t.samples) < :max_samples AND NOT t.samples @> jsonb_build_array(CAST(:sample AS text))
                       THEN t.samples || jsonb_build_array(CAST(:sample AS text)) ELSE t.samples END
    RETURNING count, window_start, window_end
    """
)

# SKIP LOCKED: a window another transaction is counting into or closing is left for the next sweep, so
# two security events never wait on (or deadlock over) each other's tallies.
_CLOSE_EXPIRED = text(
    """
    DELETE FROM security_tallies WHERE ctid IN (
        SELECT ctid FROM security_tallies WHERE window_end <= now() FOR UPDATE SKIP LOCKED
    )
    RETURNING kind, source, actor_id, count, samples, window_start, window_end, last_at
    """
)


class Occurrence(NamedTuple):
    first: bool
    window_start: datetime
    window_end: datetime


def count(session: Session, *, kind: str, source: str, actor_id: int | None, sample: str, window_s: int) -> Occurrence:
    """Count one occurrence in the open window of (kind, source), opening one if there is none."""
    row = session.execute(
        _COUNT, {"kind": kind, "source": source[:300], "actor_id": actor_id, "sample": sample[:300], "window_s": window_s, "max_samples": MAX_SAMPLES}
    ).one()
    return Occurrence(first=int(row[0]) == 1, window_start=row[1], window_end=row[2])


def close_expired(session: Session) -> list[SecurityEventsAggregated]:
    """Remove the tallies whose window has ended; return those that counted repetitions, as event payloads."""
    closed = []
    for row in session.execute(_CLOSE_EXPIRED).mappings():
        if int(row["count"]) > 1:
            closed.append(
                SecurityEventsAggregated(
                    kind=row["kind"],
                    source=row["source"],
                    actor_id=row["actor_id"],
                    count=int(row["count"]),
                    samples=list(row["samples"]),
                    window_start=row["window_start"].isoformat(),
                    window_end=row["window_end"].isoformat(),
                    last_at=row["last_at"].isoformat(),
                )
            )
    return closed
