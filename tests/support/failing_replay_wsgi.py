"""The real app whose websocket replays fail in the database (as a dropped connection mid-replay would)."""

from typing import Any

import gad.realtime.connection
from gad import create_app

app = create_app()


def _failing_events_after(after: int, limit: int = 500) -> Any:
    raise RuntimeError("simulated database failure while reading the event log")


gad.realtime.connection.events_after = _failing_events_after
