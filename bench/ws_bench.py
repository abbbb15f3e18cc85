"""Websocket benchmarks on ONE gevent worker.

1. commit -> client latency with 1,000 connected clients (target p99 <= 20 ms): a writer creates
   tareas over REST; every client timestamps each frame on arrival; latency = arrival - the event's
   commit timestamp (same machine, same clock).
2. idle capacity: open N idle sockets and read the worker's RSS (target 10,000 per worker at <= 25 KB each).

    .venv/bin/python -m bench.ws_bench --clients 1000 --idle 10000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import login, percentile, spawned_server


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _clients(url: str, token: str, count: int, hold_s: float, expect: int, out: str, measure: bool = True) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import websocket

    _raise_fd_limit()
    latencies: list[float] = []
    connected = 0

    def one() -> None:
        nonlocal connected
        ws = websocket.create_connection(url.replace("http", "ws") + f"/ws/connect?token={token}", timeout=60, suppress_origin=True)
        connected += 1
        ws.recv()  # ack
        seen = 0
        deadline = time.time() + hold_s
        ws.settimeout(1)
        if not measure:
            # Background load that costs no client CPU while the probes measure: the frames of one run (20
            # events of a few hundred bytes) fit in the socket's receive buffer, so the server writes every
            # one of them without waiting, exactly as it would to clients on other machines. Reading them
            # here would put 980 Python parses per event on the cores the server needs.
            gevent.sleep(max(0.0, deadline - time.time()))
            ws.close()
            return
        while time.time() < deadline and (expect == 0 or seen < expect):
            try:
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            arrived = time.time()
            frame = json.loads(raw)
            if "id" in frame:
                seen += 1
                latencies.append(arrived - datetime.fromisoformat(frame["timestamp"]).timestamp())
        ws.close()

    greenlets = []
    for _ in range(count):
        greenlets.append(gevent.spawn(one))
        gevent.sleep(0.02)  # ~200 handshakes/s over 4 processes: a ramp, not a storm (a storm gets 503s)
    gevent.joinall(greenlets)
    Path(out).write_text(json.dumps({"latencies": latencies, "connected": connected}))


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _worker_pid() -> int:
    """The worker of the gunicorn this benchmark spawned (never another gunicorn left on the machine)."""
    master = os.environ["GAD_BENCH_GUNICORN_PID"]
    children = subprocess.run(["pgrep", "-P", master], capture_output=True, text=True).stdout.split()
    if not children:
        raise RuntimeError("no gunicorn worker found")
    return int(children[0])


def _spawn_clients(url: str, token: str, total: int, processes: int, hold_s: float, expect: int, measure: bool = True) -> tuple[list[Any], Path]:
    ctx = mp.get_context("spawn")
    outdir = Path(tempfile.mkdtemp(prefix="gad-ws-"))
    procs = []
    for i in range(processes):
        count = total // processes + (1 if i < total % processes else 0)
        proc = ctx.Process(target=_clients, args=(url, token, count, hold_s, expect, str(outdir / f"{i}.json"), measure))
        proc.start()
        procs.append(proc)
    return procs, outdir


PROBES = 20


def _lag_buckets(url: str) -> dict[str, float]:
    """The server's own commit -> send histogram (cumulative counts by upper bound), from /metrics."""
    import re

    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    return {le: float(n) for le, n in re.findall(r'^gad_event_commit_to_send_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)}


def latency(url: str, clients: int, events: int) -> dict[str, Any]:
    """``clients`` sockets in all: PROBES of them timestamp frames in a process of their own, the rest
    are background load that drains its sockets. A probe's latency is what one real client, on its own
    machine, would see while the worker fans every event out to all ``clients``."""
    token = login(url)
    background, _ = _spawn_clients(url, token, clients - PROBES, 3, hold_s=120, expect=0, measure=False)
    probes, outdir = _spawn_clients(url, token, PROBES, 1, hold_s=120, expect=events)
    time.sleep(max(8, clients / 180))  # let every client connect
    buckets_before = _lag_buckets(url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for i in range(events):
        body = json.dumps({"codigo": f"WSB{int(time.time()) % 100000:05d}{i:04d}", "titulo": "Latencia websocket", "tipo": "patrullaje"}).encode()
        urllib.request.urlopen(urllib.request.Request(url + "/api/v1/tasks", data=body, headers=headers), timeout=30).read()
        time.sleep(0.2)
    for proc in probes:
        proc.join()
    buckets = {le: n - buckets_before.get(le, 0.0) for le, n in _lag_buckets(url).items()}
    for proc in background:
        proc.terminate()
        proc.join()
    lat: list[float] = []
    connected = 0
    for f in outdir.glob("*.json"):
        data = json.loads(f.read_text())
        lat.extend(data["latencies"])
        connected += data["connected"]
    return {
        "clients": clients,
        "probe_clients": connected,
        "frames": len(lat),
        "expected_frames": PROBES * events,
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "target_p99_ms": 20,
        # Server side, no client in the way: share of fan-outs that had written every socket within 10/20 ms.
        "server_fanout_within_10ms": round(buckets.get("0.01", 0) / max(buckets.get("+Inf", 0), 1), 3),
        "server_fanout_within_20ms": round(buckets.get("0.02", 0) / max(buckets.get("+Inf", 0), 1), 3),
    }


def idle_capacity(url: str, count: int) -> dict[str, Any]:
    token = login(url)
    pid = _worker_pid()
    before = _rss_kb(pid)
    procs, _ = _spawn_clients(url, token, count, 4, hold_s=max(60, count / 180 + 40), expect=0)
    time.sleep(max(30, count / 180 + 15))
    with urllib.request.urlopen(urllib.request.Request(url + "/ws/stats", headers={"Authorization": f"Bearer {token}"}), timeout=30) as r:
        open_now = json.loads(r.read())["connections"]
    after = _rss_kb(pid)
    for proc in procs:
        proc.join()
    return {
        "connections_open": open_now,
        "worker_rss_before_mb": round(before / 1024, 1),
        "worker_rss_after_mb": round(after / 1024, 1),
        "kb_per_connection": round((after - before) / max(open_now, 1), 1),
        "target_kb_per_connection": 25,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--skip-idle", action="store_true", help="only the latency measurement")
    args = parser.parse_args()
    _raise_fd_limit()
    with spawned_server(workers=1, extra_env={"WORKER_CONNECTIONS": str(args.idle + 1000), "WS_PING_INTERVAL": "25"}) as url:
        lat_runs = [latency(url, args.clients, args.events) for _ in range(args.runs)]
        result = {
            "latency": lat_runs[0] if args.runs == 1 else {k: statistics.median(r[k] for r in lat_runs) for k in ("p50_ms", "p99_ms")},
            "idle": None if args.skip_idle else idle_capacity(url, args.idle),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
