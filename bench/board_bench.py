"""The board's first read over a database with history: every tarea (before) against the open ones and the latest
closed ones (now), over HTTP against one gevent worker, interleaved rounds, medians.

The board reads its list with ``api.fetchAll``: pages of 100 that overlap by 20, one after another. This replays
those reads as the page makes them (the two closed reads beside the open list, as its ``Promise.all`` does).

    .venv/bin/python -m bench.board_bench                     # 20,000 tareas, ~10 % open
    .venv/bin/python -m bench.board_bench --tareas 100000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import login, spawned_server
from bench.reportes_bench import _get, populate

PAGE, OVERLAP, CLOSED_SHOWN = 100, 20, 20  # api.js pages(), board.js


def _all_pages(url: str, token: str, path: str) -> tuple[int, int, int]:
    """fetchAll's reads of ``path``: (requests, bytes, items)."""
    requests = size = items = 0
    offset = 0
    while True:
        _, body = _get(f"{url}{path}&limit={PAGE}&offset={offset}", token)
        page = json.loads(body)["items"]
        requests, size, items = requests + 1, size + len(body), items + len(page)
        if len(page) < PAGE:
            return requests, size, items
        offset += PAGE - OVERLAP


def every_tarea(url: str, token: str) -> dict[str, Any]:
    started = time.perf_counter()
    requests, size, _ = _all_pages(url, token, "/api/v1/tasks?sort=-created_at")
    return {"s": time.perf_counter() - started, "requests": requests, "bytes": size}


def open_and_latest_closed(url: str, token: str) -> dict[str, Any]:
    started = time.perf_counter()
    with ThreadPoolExecutor(3) as pool:
        closed = [
            pool.submit(_get, f"{url}/api/v1/tasks?estado={estado}&sort=-cerrada_en&limit={CLOSED_SHOWN}", token) for estado in ("finalizada", "cancelada")
        ]
        requests, size, _ = _all_pages(url, token, "/api/v1/tasks?estado=programada,en_curso,pausada&sort=-created_at")
        size += sum(len(future.result()[1]) for future in closed)
    return {"s": time.perf_counter() - started, "requests": requests + len(closed), "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tareas", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with spawned_server(workers=1) as url:
        loaded = populate(os.environ["GAD_BENCH_DB_URL"], args.tareas, 0)
        token = login(url)
        ways = {"every_tarea (before)": every_tarea, "open_and_latest_closed (now)": open_and_latest_closed}
        for way in ways.values():
            way(url, token)  # warm-up
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ways}
        for _ in range(args.rounds):  # interleaved: a burst of load from elsewhere hits both alike
            for name, way in ways.items():
                runs[name].append(way(url, token))
        report = {
            name: {
                "median_s": round(statistics.median(r["s"] for r in results), 3),
                "runs_s": [round(r["s"], 3) for r in results],
                "requests": results[0]["requests"],
                "bytes": results[0]["bytes"],
            }
            for name, results in runs.items()
        }
        before, now = (report[name]["median_s"] for name in ways)
        print(json.dumps({"loaded": loaded, **report, "now_div_before": round(now / before, 3)}, indent=2))


if __name__ == "__main__":
    main()
