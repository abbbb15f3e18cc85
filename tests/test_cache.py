"""The read cache: never stale after a write on another worker; Redis shared, prefixed, and survivable."""

from __future__ import annotations

import pytest
import redis

from tests.builders import Builders
from tests.conftest import make_app


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


def test_a_write_sends_redis_nothing_and_the_next_read_replaces_the_stale_entry(database_url: str, build: Builders, redis_server: dict) -> None:
    """The event stamp is the invalidation: a write's commit does not wait on Redis (nor on its timeout while
    Redis is unreachable), and the summary it made stale is recomputed by the next read."""
    app = make_app(database_url, REDIS_URL=redis_server["url"])
    client = app.test_client()
    headers = build.headers(build.usuario(2))
    raw = redis.Redis(port=redis_server["port"])
    assert client.get("/api/v1/dashboard/resumen", headers=headers).get_json()["tareas_por_estado"]["programada"] == 0

    def commands() -> dict[str, int]:
        return {name: stats["calls"] for name, stats in raw.info("commandstats").items() if name != "cmdstat_info"}

    before = commands()
    created = client.post("/api/v1/tasks", json={"codigo": "REDIS-QUIET", "titulo": "Sin ida a Redis", "tipo": "patrullaje"}, headers=headers)
    assert created.status_code == 201
    assert commands() == before
    assert client.get("/api/v1/dashboard/resumen", headers=headers).get_json()["tareas_por_estado"]["programada"] == 1
    assert client.get("/api/v1/dashboard/resumen", headers=headers).get_json()["tareas_por_estado"]["programada"] == 1  # the new entry
