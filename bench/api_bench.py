"""API throughput and latency on ONE gevent worker: get one tarea, list 100, create, transition.

Targets (issue 4, 2-core machine, one worker): get >= 2,000 req/s, list of 100 >= 700 req/s,
create >= 600 req/s, get p99 <= 50 ms at 64 concurrent clients.

    .venv/bin/python -m bench.api_bench                 # spawns its own server (embedded PostgreSQL)
    .venv/bin/python -m bench.api_bench --url http://127.0.0.1:8080 --runs 3 --duration 5

Load for get/list/create comes from wrk when it is installed (``apt-get install wrk``), else from the
Python client processes; transitions always use the Python client (each client toggles its own tarea).
Set GAD_BENCH_CLIENT=python to force the Python client everywhere.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.request
from functools import partial
from typing import Any

from bench.harness import Call, login, median_of, run_cli, run_load, run_wrk, wrk_available

CONCURRENCY = (1, 16, 64)


def _api(url: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def get_one(tarea_id: int, index: int, seq: int) -> tuple[str, str, None]:
    return "GET", f"/api/v1/tasks/{tarea_id}", None


def list_100(index: int, seq: int) -> tuple[str, str, None]:
    return "GET", "/api/v1/tasks?limit=100", None


def create(prefix: str, index: int, seq: int) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/api/v1/tasks", {"codigo": f"{prefix}{index:02d}{seq:07d}", "titulo": "Tarea de benchmark", "tipo": "patrullaje", "prioridad": 2}


def transition(tarea_ids: list[int], index: int, seq: int) -> tuple[str, str, dict[str, str]]:
    # Each client owns one running tarea and toggles it en_curso <-> pausada: every call is a real transition.
    return "POST", f"/api/v1/tasks/{tarea_ids[index]}/estado", {"estado": "pausada" if seq % 2 == 0 else "en_curso"}


def prepare(url: str, token: str) -> dict[str, Any]:
    prefix = "B" + secrets.token_hex(2).upper()
    ids = [
        _api(url, token, "POST", "/api/v1/tasks", {"codigo": f"{prefix}S{i:04d}", "titulo": "Tarea semilla", "tipo": "vigilancia"})["id"] for i in range(120)
    ]
    return {"prefix": prefix, "ids": ids}


def running_tareas(url: str, token: str, count: int, tag: str) -> list[int]:
    ids = []
    for i in range(count):
        tarea = _api(url, token, "POST", "/api/v1/tasks", {"codigo": f"{tag}{i:03d}", "titulo": "Tarea en marcha", "tipo": "patrullaje"})
        _api(url, token, "POST", f"/api/v1/tasks/{tarea['id']}/estado", {"estado": "en_curso"})
        ids.append(tarea["id"])
    return ids


def _wrk(url: str, name: str, authorization: str, tarea_id: int, concurrency: int, duration: float) -> dict[str, Any]:
    if name == "get_one":
        return run_wrk(url, "GET", f"/api/v1/tasks/{tarea_id}", authorization, concurrency, duration)
    if name == "list_100":
        return run_wrk(url, "GET", "/api/v1/tasks?limit=100", authorization, concurrency, duration)
    prefix = "W" + secrets.token_hex(3).upper()
    body = '{"codigo": "' + prefix + '%08d", "titulo": "Tarea de benchmark", "tipo": "patrullaje", "prioridad": 2}'
    return run_wrk(url, "POST", "/api/v1/tasks", authorization, concurrency, duration, body_template=body)


def measure(url: str, runs: int, duration: float) -> dict[str, Any]:
    token = login(url)
    headers = {"Authorization": f"Bearer {token}"}
    seed = prepare(url, token)
    results: dict[str, Any] = {}
    use_wrk = wrk_available() and os.environ.get("GAD_BENCH_CLIENT") != "python"
    for concurrency in CONCURRENCY:
        for name in ("get_one", "list_100", "create", "transition"):
            samples = []
            for _ in range(runs):
                if use_wrk and name != "transition":
                    samples.append(_wrk(url, name, headers["Authorization"], seed["ids"][0], concurrency, duration))
                    continue
                if name == "get_one":
                    call = Call(partial(get_one, seed["ids"][0]), headers)
                elif name == "list_100":
                    call = Call(list_100, headers)
                elif name == "create":
                    call = Call(partial(create, "C" + secrets.token_hex(2).upper()), headers)
                else:  # fresh running tareas each run, so every toggle starts from en_curso
                    ids = running_tareas(url, token, concurrency, "TR" + secrets.token_hex(3).upper())
                    call = Call(partial(transition, ids), headers)
                samples.append(run_load(url, call, concurrency, duration))
            results.setdefault(name, {})[str(concurrency)] = median_of(samples)
    return results


if __name__ == "__main__":
    run_cli(__doc__, measure)
