"""The real app with its websocket set-up slowed down, to open the windows a busy worker has for a moment.

``GAD_TEST_REGISTER_GATE``: a directory. Between the handshake's credential check and the socket's registration
with the hub, the worker creates ``checked`` in it and waits until the test creates ``release`` there (a test that
slept instead guessed how long a loaded machine takes to check a token). ``GAD_TEST_REPLAY_BATCH_DELAY_S``:
seconds each batch of a replay's log read takes.
"""

import os
import time
from typing import Any

import gevent

import gad.realtime.connection
from gad import create_app
from gad.realtime.hub import hub

app = create_app()

_register_gate = os.environ.get("GAD_TEST_REGISTER_GATE")
_batch_delay = float(os.environ.get("GAD_TEST_REPLAY_BATCH_DELAY_S", "0"))
_register = hub.register
_events_after = gad.realtime.connection.events_after


def _slow_register(conn: Any) -> None:
    if _register_gate:
        open(os.path.join(_register_gate, "checked"), "w").close()
        release = os.path.join(_register_gate, "release")
        deadline = time.monotonic() + 20
        while not os.path.exists(release) and time.monotonic() < deadline:
            gevent.sleep(0.02)
    _register(conn)


def _slow_events_after(after: int, limit: int = 500) -> Any:
    gevent.sleep(_batch_delay)
    return _events_after(after, limit)


hub.register = _slow_register  # type: ignore[method-assign]
gad.realtime.connection.events_after = _slow_events_after
