"""The read cache: never stale after a write on another worker; Redis shared, prefixed, and survivable."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gad.embedded import free_port
from tests.builders import Builders
from tests.conftest import make_app


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[dict]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is required for the cache tests: apt-get install redis-server (.ci/run does)")
    port = free_port()
    state: dict = {"port": port, "url": f"redis://127.0.0.1:{port}/0"}

    def start() -> None:
        state["proc"] = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop() -> None:
        state["proc"].terminate()
        state["proc"].wait(timeout=10)

    state["start"], state["stop"] = start, stop
    start()
    yield state
    if state["proc"].poll() is None:
        stop()


def test_resumen_counts_and_is_never_stale_after_a_write_on_another_worker(database_url: str, build: Builders) -> None:
    # Two app instances = two workers, each with its own in-process cache.
    worker_a, worker_b = make_app(database_url).test_client(), make_app(database_url).test_client()
    sup = build.usuario(2)
    headers = build.headers(sup)
    build.efectivo()
    before = worker_a.get("/api/v1/dashboard/resumen", headers=headers).get_json()
    assert before["tareas_por_estado"]["programada"] == 0 and before["efectivos_por_disponibilidad"]["disponible"] == 1
    assert worker_a.get("/api/v1/dashboard/resumen", headers=headers).get_json() == before  # served from cache
    created = worker_b.post("/api/v1/tasks", json={"codigo": "STALE-1", "titulo": "Nunca obsoleto", "tipo": "patrullaje"}, headers=headers)
    assert created.status_code == 201
    after = worker_a.get("/api/v1/dashboard/resumen", headers=headers).get_json()
    assert after["tareas_por_estado"]["programada"] == 1


def test_redis_cache_is_shared_prefixed_and_survives_an_outage(
    database_url: str, build: Builders, redis_server: dict, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(database_url, REDIS_URL=redis_server["url"])
    client = app.test_client()
    sup, admin = build.usuario(2), build.usuario(3)
    headers = build.headers(sup)
    raw = redis.Redis(port=redis_server["port"])
    raw.set("someone-elses-key", "keep me")
    assert client.get("/api/v1/dashboard/resumen", headers=headers).status_code == 200
    keys = {k.decode() for k in raw.keys("*")}
    assert "gad:dashboard:resumen" in keys
    assert client.post("/api/v1/cache/clear", headers=build.headers(admin)).status_code == 204
    assert raw.get("someone-elses-key") == b"keep me"  # clearing our cache never wipes a shared Redis
    assert not [k for k in raw.keys("gad:dashboard*")]

    redis_server["stop"]()
    with caplog.at_level("WARNING", logger="gad.caching"):
        down = client.get("/api/v1/dashboard/resumen", headers=headers)
        created = client.post("/api/v1/tasks", json={"codigo": "REDIS-DOWN", "titulo": "Sin caché", "tipo": "patrullaje"}, headers=headers)
    assert down.status_code == 200 and created.status_code == 201
    assert client.get("/api/v1/dashboard/resumen", headers=headers).get_json()["tareas_por_estado"]["programada"] == 1
    assert any("cache unavailable" in r.getMessage() for r in caplog.records)

    redis_server["start"]()
    client.get("/api/v1/dashboard/resumen", headers=headers)
    assert raw.exists("gad:dashboard:resumen")  # used again once it is back
    stats = client.get("/api/v1/cache/stats", headers=build.headers(admin)).get_json()
    assert stats["backend"] == "RedisCache" and stats["errors"] >= 1
