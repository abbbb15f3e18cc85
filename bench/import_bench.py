"""Issue 16: GRUPO_GAD import rate (rows/s) and the importer's memory as the source grows.

Builds a GRUPO_GAD database in the old schema (``tests.grupo_gad_source``) on an embedded PostgreSQL with
N finished tareas (two efectivos each, in both assignment stores, two history rows each), migrates an empty
GAD database, and runs the real ``flask gad import-grupo-gad`` against it, sampling the process's resident
memory every 0.2 s. Run for several sizes: flat memory means the peak does not grow with N.

    .venv/bin/python -m bench.import_bench --tareas 20000 100000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_once(server_url: str, tareas: int, batch_size: int) -> dict[str, float]:
    from tests import grupo_gad_source as legacy
    from tests.conftest import recreate_database

    source = recreate_database(server_url, f"bench_src_{tareas}")
    legacy.create_schema(source)
    started = time.monotonic()
    legacy.fill_bulk(source, tareas=tareas)
    fill_s = time.monotonic() - started
    target = recreate_database(server_url, f"bench_gad_{tareas}")
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": target, "LOG_LEVEL": "WARNING"}
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)

    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    command = [*flask, "gad", "import-grupo-gad", source, "--batch-size", str(batch_size)]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def sample() -> None:
        while proc.poll() is None:
            samples.append((time.monotonic() - started, _rss_kb(proc.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    elapsed = time.monotonic() - started
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"import failed ({proc.returncode}):\n{out}")
    rows = tareas * 3 + 500 + 400  # tareas + their history rows + usuarios + efectivos
    rss = [kb for _, kb in samples if kb]
    quarter = [kb for t, kb in samples if kb and t >= elapsed / 4]
    return {
        "tareas": tareas,
        "source_rows": rows,
        "fill_s": fill_s,
        "import_s": elapsed,
        "rows_per_s": rows / elapsed,
        "tareas_per_s": tareas / elapsed,
        "rss_after_first_quarter_mb": (min(quarter) if quarter else 0) / 1024,
        "rss_peak_mb": max(rss) / 1024 if rss else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tareas", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    from gad.embedded import EmbeddedPostgres, free_port, wait_until_accepting

    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="gad-bench-import-")) / "pg", port=free_port())
    url = pg.start()
    wait_until_accepting(url)
    try:
        for tareas in args.tareas:
            result = run_once(url, tareas, args.batch_size)
            print(
                f"{result['tareas']:>7} tareas ({result['source_rows']:,} source rows): import {result['import_s']:.1f} s"
                f" = {result['rows_per_s']:,.0f} rows/s ({result['tareas_per_s']:,.0f} tareas/s);"
                f" RSS after the first quarter {result['rss_after_first_quarter_mb']:.0f} MB, peak {result['rss_peak_mb']:.0f} MB"
                f" (source built in {result['fill_s']:.1f} s)",
                flush=True,
            )
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
