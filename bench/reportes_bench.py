"""Reports over 1,000,000 tareas and 100,000 turnos on one worker, and the streamed CSV export's memory.

Targets (issue 17): each report (tiempos, carga, resultados) over the whole year answers in < 2 s;
the CSV export of 1,000,000 rows streams in constant memory (the worker's RSS does not grow with it).

    .venv/bin/python -m bench.reportes_bench            # spawns its own server and bulk-loads the rows
    .venv/bin/python -m bench.reportes_bench --tareas 100000 --turnos 10000   # a quicker run
    .venv/bin/python -m bench.reportes_bench --datadir /tmp/gad-reportes-pg   # load once, reuse after
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg2

from bench.harness import login, spawned_server

YEAR = ("2026-01-01T00:00:00%2B00:00", "2027-01-01T00:00:00%2B00:00")
EFECTIVOS = 2000
UNIDADES = 20


def populate(db_url: str, tareas: int, turnos: int) -> dict[str, float]:
    """Bulk-load with set-based SQL (what matters is the shape of the data, not how it got there)."""
    timings: dict[str, float] = {}
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM efectivos WHERE codigo_interno LIKE 'RB-%%'")
        if cur.fetchone()[0]:  # a kept database (--datadir) loaded by an earlier run: measure it as it is
            cur.execute("VACUUM ANALYZE")
            return _counts(cur) | {"reused": True}
        started = time.perf_counter()
        cur.execute(
            """INSERT INTO efectivos (uuid, codigo_interno, nombre, unidad, estado_disponibilidad, estado_cambiado_en, activo, created_at, updated_at, version)
               SELECT gen_random_uuid(), 'RB-' || g, 'Agente ' || g, 'Móvil ' || mod(g, %s), 'disponible', now(), true, now(), now(), 1
                 FROM generate_series(1, %s) g""",
            (UNIDADES, EFECTIVOS),
        )
        cur.execute("SELECT min(id) FROM efectivos WHERE codigo_interno LIKE 'RB-%%'")
        first_efectivo = cur.fetchone()[0]
        cur.execute("SELECT id FROM usuarios ORDER BY id LIMIT 1")
        creator = cur.fetchone()[0]
        # Tareas spread over 2026: ~80 % finished (some paused), ~10 % cancelled, ~10 % still open; 5 % emergencies.
        cur.execute(
            """INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, created_at, updated_at,
                                   inicio_real, fin_real, tiempo_pausado_s, creado_por_usuario_id, version, cerrada_en)
               SELECT gen_random_uuid(), 'RB' || g, 'Tarea de carga ' || g,
                      (ARRAY['patrullaje','investigacion','vigilancia','intervencion','administrativa','entrenamiento','emergencia'])[1 + mod(g, 7)],
                      1 + mod(g, 5),
                      CASE WHEN mod(g, 10) = 0 THEN 'cancelada' WHEN mod(g, 10) = 1 THEN 'programada' ELSE 'finalizada' END,
                      mod(g, 20) = 0,
                      c, c,
                      CASE WHEN mod(g, 10) = 1 THEN NULL ELSE c + make_interval(secs => 60 + mod(g, 1800)) END,
                      CASE WHEN mod(g, 10) = 1 THEN NULL ELSE c + make_interval(secs => 3600 + mod(g, 7200)) END,
                      CASE WHEN mod(g, 10) IN (0, 1) THEN 0 ELSE (mod(g, 4)) * 300 END,
                      %s, 1,
                      CASE WHEN mod(g, 10) = 1 THEN NULL ELSE c + make_interval(secs => 3600 + mod(g, 7200)) END
                 FROM (SELECT g, timestamptz '2026-01-01' + make_interval(secs => (g::bigint * 31536000 / %s)) AS c
                         FROM generate_series(1, %s) g) s""",
            (creator, tareas, tareas),
        )
        timings["tareas_s"] = time.perf_counter() - started
        started = time.perf_counter()
        # One assignment per tarea except every 13th (never assigned), all released by now.
        cur.execute(
            """INSERT INTO asignaciones (tarea_id, efectivo_id, asignado_en, liberado_en, fuera_de_turno)
               SELECT t.id, %s + (mod(t.id, %s)), t.created_at + make_interval(secs => 30 + mod(t.id, 600)),
                      coalesce(t.fin_real, t.created_at + interval '2 hours'), false
                 FROM tareas t WHERE t.codigo LIKE 'RB%%' AND mod(t.id, 13) <> 0""",
            (first_efectivo, EFECTIVOS),
        )
        # What assignment does for a live tarea: remember when its first efectivo was assigned.
        cur.execute(
            """UPDATE tareas SET primera_asignacion_en = created_at + make_interval(secs => 30 + mod(id, 600))
                WHERE codigo LIKE 'RB%%' AND mod(id, 13) <> 0"""
        )
        timings["asignaciones_s"] = time.perf_counter() - started
        started = time.perf_counter()
        per = max(1, turnos // EFECTIVOS)
        # 8-hour turnos every 3 days per efectivo: never overlapping, as the constraint demands.
        cur.execute(
            """INSERT INTO turnos (efectivo_id, unidad, tipo, periodo, created_at, updated_at, version)
               SELECT e.id, e.unidad, 'servicio',
                      tstzrange(timestamptz '2026-01-01 06:00+00' + make_interval(days => 3 * k),
                                timestamptz '2026-01-01 14:00+00' + make_interval(days => 3 * k), '[)'),
                      now(), now(), 1
                 FROM efectivos e CROSS JOIN generate_series(0, %s - 1) k WHERE e.codigo_interno LIKE 'RB-%%'""",
            (per,),
        )
        timings["turnos_s"] = time.perf_counter() - started
        cur.execute("VACUUM ANALYZE")
        timings.update(_counts(cur))
    conn.close()
    return timings


def _counts(cur: Any) -> dict[str, Any]:
    cur.execute("SELECT (SELECT count(*) FROM tareas), (SELECT count(*) FROM asignaciones), (SELECT count(*) FROM turnos)")
    counts = cur.fetchone()
    return {"tareas": counts[0], "asignaciones": counts[1], "turnos": counts[2]}


def floors(db_url: str, runs: int) -> dict[str, float]:
    """What no report can beat, timed beside them: a bare count of the year's tareas and of all asignaciones."""
    conn = psycopg2.connect(db_url)
    out: dict[str, float] = {}
    with conn.cursor() as cur:
        for name, sql in (
            ("count_tareas_s", "SELECT count(*) FROM tareas WHERE created_at >= '2026-01-01' AND created_at < '2027-01-01'"),
            ("count_asignaciones_s", "SELECT count(*) FROM asignaciones"),
        ):
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                cur.execute(sql)
                cur.fetchone()
                times.append(time.perf_counter() - started)
            out[name] = round(statistics.median(times), 3)
    conn.close()
    return out


def _get(url: str, token: str) -> tuple[float, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    return time.perf_counter() - started, body


def _worker_pid() -> int:
    master = __import__("os").environ["GAD_BENCH_GUNICORN_PID"]
    children = subprocess.run(["pgrep", "-P", master], capture_output=True, text=True, check=False).stdout.split()
    return int(children[0])


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stream_csv(url: str, token: str, pid: int) -> dict[str, Any]:
    """Download the tareas CSV in 64 KB reads, sampling the worker's RSS as the bytes flow."""
    request = urllib.request.Request(f"{url}/api/v1/reportes/tareas.csv?desde={YEAR[0]}&hasta={YEAR[1]}", headers={"Authorization": f"Bearer {token}"})
    before = _rss_kb(pid)
    samples: list[tuple[int, int]] = []
    total = lines = 0
    started = time.perf_counter()
    first_byte = None
    with urllib.request.urlopen(request, timeout=600) as response:
        while True:
            chunk = response.read(65536)
            if not chunk:
                break
            if first_byte is None:
                first_byte = time.perf_counter() - started
            total += len(chunk)
            lines += chunk.count(b"\n")
            if len(samples) == 0 or total - samples[-1][0] > 8_000_000:
                samples.append((total, _rss_kb(pid)))
    elapsed = time.perf_counter() - started
    rss = [kb for _, kb in samples]
    return {
        "rows": lines - 1,
        "bytes": total,
        "seconds": round(elapsed, 1),
        "first_byte_s": round(first_byte or 0, 3),
        "rss_before_mb": round(before / 1024, 1),
        "rss_max_mb": round(max(rss) / 1024, 1),
        "rss_after_mb": round(_rss_kb(pid) / 1024, 1),
        "rss_samples_mb": [round(kb / 1024, 1) for kb in rss],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tareas", type=int, default=1_000_000)
    parser.add_argument("--turnos", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--datadir", type=Path, help="keep the PostgreSQL cluster here and reuse its rows on the next run")
    parser.add_argument("--no-csv", action="store_true", help="skip the (long) CSV download")
    args = parser.parse_args()
    # A report over a year of a loaded machine may exceed the default 15 s statement timeout; measure it anyway.
    with spawned_server(workers=1, extra_env={"DB_STATEMENT_TIMEOUT_MS": "120000"}, datadir=args.datadir) as url:
        import os

        loaded = populate(os.environ["GAD_BENCH_DB_URL"], args.tareas, args.turnos)
        token = login(url)
        results: dict[str, Any] = {"loaded": loaded}
        print(json.dumps({"loaded": loaded}), flush=True)
        results["floor"] = floors(os.environ["GAD_BENCH_DB_URL"], args.runs)
        print(json.dumps({"floor": results["floor"], "load_average": Path("/proc/loadavg").read_text().split()[:3]}), flush=True)
        kinds = ("tiempos", "carga", "resultados")
        whole = {k: f"{url}/api/v1/reportes/{k}?desde={YEAR[0]}&hasta={YEAR[1]}" for k in kinds}
        narrow = {k: f"{url}/api/v1/reportes/{k}?desde=2026-06-01&hasta=2026-06-30&tipo=patrullaje" for k in kinds}
        for kind in kinds:
            _get(whole[kind], token)  # warm the worker and PostgreSQL's cache once
        times: dict[str, list[float]] = {k: [] for k in kinds}
        narrow_times: dict[str, list[float]] = {k: [] for k in kinds}
        loads = []
        for _ in range(args.runs):  # interleaved rounds: a burst of load from elsewhere hits every report alike
            for kind in kinds:
                times[kind].append(_get(whole[kind], token)[0])
                narrow_times[kind].append(_get(narrow[kind], token)[0])
            loads.append(Path("/proc/loadavg").read_text().split()[0])
        for kind in kinds:
            results[kind] = {
                "median_s": round(statistics.median(times[kind]), 3),
                "runs_s": [round(t, 3) for t in times[kind]],
                "one_month_one_tipo_s": round(statistics.median(narrow_times[kind]), 3),
            }
        results["floor_after"] = floors(os.environ["GAD_BENCH_DB_URL"], args.runs)
        results["load_average_per_round"] = loads
        print(json.dumps({k: results[k] for k in (*kinds, "floor_after", "load_average_per_round")}), flush=True)
        if not args.no_csv:
            results["csv"] = stream_csv(url, token, _worker_pid())
            print(json.dumps({"csv": results["csv"]}), flush=True)
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
