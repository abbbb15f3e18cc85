"""Dispatch latency on one worker: nearest efectivos among 1,000 with positions, summary, user stats.

Target (issue 5): nearest with 1,000 efectivos <= 10 ms p50.

    .venv/bin/python -m bench.dispatch_bench          # spawns its own server and inserts 1,000 efectivos
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

import psycopg2

from bench.harness import Call, login, median_of, run_load, spawned_server

CENTER = (40.4169, -3.7035)


def populate(db_url: str, count: int = 1000) -> None:
    rng = random.Random(7)
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        for i in range(count):
            cur.execute(
                "INSERT INTO efectivos (uuid, codigo_interno, nombre, estado_disponibilidad, estado_cambiado_en, lat, lon, posicion_en,"
                " activo, created_at, updated_at, version) VALUES (gen_random_uuid(), %s, %s, %s, now(), %s, %s, now(), true, now(), now(), 1)",
                (
                    f"BEN-{i:05d}",
                    f"Agente {i}",
                    rng.choice(["disponible", "disponible", "disponible", "no_disponible"]),
                    CENTER[0] + rng.uniform(-0.2, 0.2),
                    CENTER[1] + rng.uniform(-0.2, 0.2),
                ),
            )
    conn.close()


def nearest(index: int, seq: int) -> tuple[str, str, None]:
    return "GET", f"/api/v1/efectivos/cercanos?lat={CENTER[0]}&lng={CENTER[1]}&radio_m=20000&limit=5", None


def resumen(index: int, seq: int) -> tuple[str, str, None]:
    return "GET", "/api/v1/dashboard/resumen", None


def stats(index: int, seq: int) -> tuple[str, str, None]:
    return "GET", "/api/v1/stats/user/2?days=30", None


def measure(url: str, runs: int, duration: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {login(url)}"}
    out: dict[str, Any] = {}
    for name, fn in (("nearest_1000", nearest), ("resumen", resumen), ("user_stats", stats)):
        for concurrency in (1, 16):
            out.setdefault(name, {})[str(concurrency)] = median_of([run_load(url, Call(fn, headers), concurrency, duration) for _ in range(runs)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    with spawned_server(workers=1) as url:
        import os

        populate(os.environ["GAD_BENCH_DB_URL"])
        print(json.dumps(measure(url, args.runs, args.duration), indent=2))


if __name__ == "__main__":
    main()
