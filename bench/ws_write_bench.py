"""What the socket's greenlet pays per queued frame it writes (``_send_queued``), in process, over loopback TCP.

1. The usual case, the kernel takes the whole frame at once: gevent's ``sendall`` (what the writer used before the
   write timeout) against ``connection._write`` (one ``os.write``, no timer), per frame of ``--size`` bytes.
2. A write that has to wait: what its timer adds (a ``gevent.Timeout`` made, started, cancelled and closed, and one
   SIOCOUTQ ioctl), beside the wait such a write does anyway (an io watcher, a switch to the hub and back).

    .venv/bin/python -m bench.ws_write_bench --rounds 3
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import gevent
import gevent.socket

from gad.models import Usuario
from gad.realtime.connection import Connection, _unacked, _write

BATCH = 200  # frames written between two drains: they fit in the buffers, so no write waits


def _pair() -> tuple[Any, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client_side = socket.socket()
        client_side.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        client_side.connect(listener.getsockname())
        server_side, _ = listener.accept()
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    client_side.setblocking(False)
    return gevent.socket.socket(fileno=server_side.detach()), client_side


def _drain(sock: socket.socket, expected: int) -> None:
    while expected > 0:
        try:
            expected -= len(sock.recv(1 << 20))
        except BlockingIOError:
            gevent.sleep(0)


def _per_frame_ns(how: str, frame: bytes, frames: int) -> float:
    """Nanoseconds per frame for ``how`` ("sendall" or "_write"), timing only the writes."""
    server_side, client_side = _pair()
    conn = Connection(ws=SimpleNamespace(sock=server_side), usuario=Usuario(id=1, nivel=2), topics=set(), queue_size=1)
    write: Callable[[bytes], None] = server_side.sendall if how == "sendall" else lambda data: _write(conn, data)
    spent = 0
    try:
        for _ in range(frames // BATCH):
            started = time.perf_counter_ns()
            for _ in range(BATCH):
                write(frame)
            spent += time.perf_counter_ns() - started
            _drain(client_side, BATCH * len(frame))
        return spent / (frames // BATCH * BATCH)
    finally:
        server_side.close()
        client_side.close()


def _each_ns(step: Callable[[Any], None], rounds: int) -> float:
    """Nanoseconds per ``step(server_side)`` on a connected, writable socket."""
    server_side, client_side = _pair()
    try:
        started = time.perf_counter_ns()
        for _ in range(rounds):
            step(server_side)
        return (time.perf_counter_ns() - started) / rounds
    finally:
        server_side.close()
        client_side.close()


def _timer(sock: Any) -> None:
    """The timer of one blocked write: made, started, cancelled, closed, and one SIOCOUTQ."""
    timer = gevent.Timeout(60.0)
    _unacked(sock)
    timer.start()
    timer.cancel()
    timer.close()


def _wait(sock: Any) -> None:
    """The wait a blocked write does anyway (the one inside gevent's send() after EAGAIN; here on a writable socket,
    the shortest it can be): an io watcher started, a switch to the hub and back."""
    sock._wait(sock._write_event)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=400, help="bytes per frame (a task_created event is a few hundred)")
    args = parser.parse_args()
    frame = b"x" * args.size
    rows: dict[str, list[float]] = {"sendall": [], "_write": [], "timer": [], "wait": []}
    for _ in range(args.rounds):  # interleaved: a change in the machine's load hits every row alike
        rows["sendall"].append(_per_frame_ns("sendall", frame, args.frames))
        rows["_write"].append(_per_frame_ns("_write", frame, args.frames))
        rows["timer"].append(_each_ns(_timer, args.frames // 4))
        rows["wait"].append(_each_ns(_wait, args.frames // 4))
    for name, values in rows.items():
        print(f"{name:8} median {statistics.median(values):6.0f} ns   runs: {' · '.join(f'{v:.0f}' for v in values)}")
    print(f"_write / sendall: {statistics.median(rows['_write']) / statistics.median(rows['sendall']):.2f}")


if __name__ == "__main__":
    main()
