"""Side by side: the same scenarios against several systems, interleaved, with ratios (issue 18, item 7).

Any claim "GAD is N x faster than GRUPO_GAD" or "GAD reaches N % of the stack's floor" is one command:

    .venv/bin/python -m bench.compare --spawn --rounds 3 --duration 4
    .venv/bin/python -m bench.compare --system gad=http://127.0.0.1:8080 \\
        --system grupo_gad=http://127.0.0.1:8000 --login admin@example.org:secret --rounds 3

``--system NAME=URL`` names a running server (repeatable); ``--spawn`` adds a GAD server and the stack's
floors (bench.floor_app: bare Flask for /health, one pooled query for "get one" and the list of 100, one
``INSERT … RETURNING`` + COMMIT for "create") on an embedded PostgreSQL,
each one gunicorn gevent worker. Every system is logged in with the OAuth2 password form both GAD and
GRUPO_GAD accept. Rounds are interleaved: in each round every scenario runs on every system, the order of
the systems rotating from round to round, so a machine that slows down mid-run (these are shared) slows
every system alike. Before each run the spawned servers are left to go idle (``settle``), so one system's
background work after a scenario is not charged to the next. The report gives, per scenario, each system's median req/s and p50/p99 over the rounds
and the first system's req/s divided by each other's (``--baseline`` picks another first system).

``--server-cpu`` / ``--client-cpu`` pin spawned servers and the load client to different cores (taskset),
as the issue's measurements did, so the client's CPU is not the server's. The embedded PostgreSQL is not
pinned unless ``--database-cpu`` says where: unpinned it runs on either core, beside the worker or the client,
and a system whose requests make the database work harder also has its worker's core (and caches) shared more;
pinned to the client's core it stands where Fly's database does, on a machine other than the application's.
For spawned systems the report also gives
the worker's CPU per request and the database's (every PostgreSQL process of the run's cluster, charged to
the system measured at the time: the others are idle by then), and the ratios by each.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import DEMO_ADMIN, ROOT, Call, run_load, run_wrk, spawned_server, wait_healthy, wrk_available
from gad.embedded import free_port

# (name, method, path template, body template). {tarea} is a tarea the system showed us; %d in a body is a
# per-request sequence number (wrk) so creates never collide on codigo.
SCENARIOS: dict[str, tuple[str, str, str]] = {
    "health": ("GET", "/health", ""),
    "get_one": ("GET", "/api/v1/tasks/{tarea}", ""),
    "list_100": ("GET", "/api/v1/tasks?limit=100", ""),
    "me": ("GET", "/api/v1/users/me", ""),
    "create": ("POST", "/api/v1/tasks", '{{"codigo": "{prefix}%08d", "titulo": "Tarea de comparativa", "tipo": "patrullaje", "prioridad": 2{extra}}}'),
}
# What a floor app can stand in for: the scenario is skipped for a system that has no such path.
# bare Flask is the floor of /users/me too (issue 18: "≥ 60 % of bare Flask"), answering the same constant body.
FLOOR_SCENARIOS = {
    "floor_hello": {"health", "me"},
    "floor_one_query": {"get_one", "list_100"},
    "floor_write": {"create"},
    "floor_write_guarantees": {"create"},
}
# Scenarios also shown beside another scenario's floor, as the targets are literally stated (a list of
# 100 at >= 50 % of the one-query floor of get one), under "<floor>_as_<scenario>" beside the list's own floor.
BESIDE = {"list_100": ("get_one", "floor_one_query")}


@dataclass
class System:
    name: str
    url: str
    scenarios: set[str] = field(default_factory=lambda: set(SCENARIOS))
    token: str = ""
    tarea_id: int | None = None
    create_extra: str = ""
    worker_pid: int | None = None  # a spawned system's gunicorn worker, whose CPU time per request is reported
    database_pid: int | None = None  # the postmaster of a spawned system's database, whose CPU per request is reported


def _worker_of(master_pid: int) -> int:
    return int(subprocess.check_output(["pgrep", "-P", str(master_pid)]).split()[0])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _database_cpu_seconds(postmaster: int) -> float:
    """CPU time so far of a PostgreSQL cluster: the postmaster with its children (backends, WAL writer,
    autovacuum), those that have exited included (the postmaster's cutime/cstime)."""
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # exited meanwhile: its time is in the postmaster's cutime now
                continue
            if int(child[1]) == postmaster:
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _request(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _login(system: System, email: str, password: str) -> None:
    form = urllib.parse.urlencode({"username": email, "password": password}).encode()
    answer = _request(system.url + "/api/v1/auth/login", "POST", form, {"Content-Type": "application/x-www-form-urlencoded"})
    system.token = answer["access_token"]


LIST_SIZE = 100


def _prepare(system: System) -> None:
    """Find a tarea to read, what a create needs on this system (GRUPO_GAD requires a delegado), and fill the
    list to LIST_SIZE tareas so every round of ``list_100`` serialises a full page, not the demo's handful."""
    auth = {"Authorization": f"Bearer {system.token}"}
    me = _request(system.url + "/api/v1/users/me", headers=auth)
    listing = _request(system.url + f"/api/v1/tasks?limit={LIST_SIZE}", headers=auth)
    items = listing["items"] if isinstance(listing, dict) else listing  # GAD wraps lists; GRUPO_GAD does not
    if not isinstance(listing, dict):
        system.create_extra = f', "delegado_usuario_id": {me["id"]}, "inicio_programado": "2030-01-01T08:00:00Z"'
    for n in range(LIST_SIZE - len(items)):
        body = json.loads(SCENARIOS["create"][2].format(prefix="CMP-LIST-", extra=system.create_extra).replace("%08d", f"{n:08d}"))
        body["delegado_usuario_id"] = me["id"]
        items.append(_request(system.url + "/api/v1/tasks", "POST", json.dumps(body).encode(), auth | {"Content-Type": "application/json"}))
    system.tarea_id = int(items[0]["id"])


def _one_run(system: System, scenario: str, concurrency: int, duration: float, client_cpu: str | None) -> dict[str, Any]:
    """One load run; for a spawned system also the server's CPU time per request, a figure that a shared
    machine disturbs far less than req/s (another session's work on the server's core lowers req/s, not it)."""
    cpu_before = _cpu_seconds(system.worker_pid) if system.worker_pid else None
    database_before = _database_cpu_seconds(system.database_pid) if system.database_pid else None
    result = _load(system, scenario, concurrency, duration, client_cpu)
    if cpu_before is not None and system.worker_pid and result["requests"]:
        result["cpu_ms_per_request"] = round((_cpu_seconds(system.worker_pid) - cpu_before) * 1000 / result["requests"], 4)
    if database_before is not None and system.database_pid and result["requests"]:
        result["db_cpu_ms_per_request"] = round((_database_cpu_seconds(system.database_pid) - database_before) * 1000 / result["requests"], 4)
    return result


def _load(system: System, scenario: str, concurrency: int, duration: float, client_cpu: str | None) -> dict[str, Any]:
    method, path, body = SCENARIOS[scenario]
    path = path.format(tarea=system.tarea_id or 1)
    authorization = f"Bearer {system.token}" if system.token and scenario != "health" else ""
    if body:
        prefix = "K" + os.urandom(3).hex().upper()
        body = body.format(prefix=prefix, extra=system.create_extra)
    if wrk_available():
        return run_wrk(system.url, method, path, authorization, concurrency, duration, body_template=body, cpu=client_cpu)
    # The Python client runs in spawned processes: what makes each request must pickle (no closure).
    make = functools.partial(_python_client_request, method, path, body)
    return run_load(system.url, Call(make, {"Authorization": authorization} if authorization else {}), concurrency, duration)


def _python_client_request(method: str, path: str, template: str, index: int, seq: int) -> tuple[str, str, dict[str, Any] | None]:
    """One request of the Python client (no wrk): the scenario's body with a codigo unique to client and turn."""
    return method, path, json.loads(template.replace("%08d", f"{index:03d}{seq:05d}")) if template else None


SETTLE_WINDOW_S = 0.2
SETTLE_IDLE_SHARE = 0.02
SETTLE_TIMEOUT_S = 5.0


def settle(pids: list[int], databases: frozenset[int] = frozenset()) -> float:
    """Wait until the spawned servers and their database are idle: at most SETTLE_IDLE_SHARE of a core
    between them over a SETTLE_WINDOW_S window, or SETTLE_TIMEOUT_S. Without it a system's background work
    after one scenario (GAD's listener taking in the notifications of 4 s of creates, its sweeper, the
    autovacuum the creates set off) runs during the next scenario, on whichever system comes next, and is
    charged to it. Returns the seconds waited."""

    def spent() -> float:
        return sum(_cpu_seconds(pid) for pid in pids) + sum(_database_cpu_seconds(pid) for pid in databases)

    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT_S:
        before = spent()
        time.sleep(SETTLE_WINDOW_S)
        if spent() - before <= SETTLE_IDLE_SHARE * SETTLE_WINDOW_S:
            break
    return time.monotonic() - started


def compare(systems: list[System], scenarios: list[str], concurrency: list[int], rounds: int, duration: float, client_cpu: str | None) -> dict[str, Any]:
    samples: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    spawned = [s.worker_pid for s in systems if s.worker_pid]
    databases = frozenset(s.database_pid for s in systems if s.database_pid)
    for round_number in range(rounds):
        order = systems[round_number % len(systems) :] + systems[: round_number % len(systems)]
        for scenario in scenarios:
            for clients in concurrency:
                for system in order:
                    if scenario in system.scenarios:
                        waited = settle(spawned, databases)
                        run = _one_run(system, scenario, clients, duration, client_cpu)
                        samples.setdefault((scenario, clients, system.name), []).append(run | {"settle_s": round(waited, 2)})
    return beside(summarise(samples, [s.name for s in systems]))


def beside(report: dict[str, Any]) -> dict[str, Any]:
    """Copy each BESIDE floor's figure onto the scenario compared with it (marked ``"as": <its scenario>``)."""
    for key, entry in report.items():
        scenario, _, clients = key.partition("@")
        if scenario in BESIDE:
            source, floor = BESIDE[scenario]
            measured = report.get(f"{source}@{clients}", {}).get(floor)
            if measured is not None:
                entry[f"{floor}_as_{source}"] = measured | {"as": source}
    return report


def summarise(samples: dict[tuple[str, int, str], list[dict[str, Any]]], names: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for (scenario, clients, name), runs in sorted(samples.items()):
        entry = report.setdefault(f"{scenario}@{clients}", {})
        entry[name] = {
            "rps": round(statistics.median(r["rps"] for r in runs), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
            "rounds": len(runs),
            "rps_per_round": [r["rps"] for r in runs],
            "errors": sum(sum(r["errors"].values()) for r in runs),
            "settle_s_per_round": [r.get("settle_s", 0.0) for r in runs],
        }
        if all("cpu_ms_per_request" in r for r in runs):
            entry[name]["cpu_ms_per_request"] = round(statistics.median(r["cpu_ms_per_request"] for r in runs), 4)
            entry[name]["cpu_ms_per_round"] = [r["cpu_ms_per_request"] for r in runs]
        if all("db_cpu_ms_per_request" in r for r in runs):
            entry[name]["db_cpu_ms_per_request"] = round(statistics.median(r["db_cpu_ms_per_request"] for r in runs), 4)
            entry[name]["db_cpu_ms_per_round"] = [r["db_cpu_ms_per_request"] for r in runs]
            # Per round, so the median of the sums is of one run's worker and database together.
            sums = [r["cpu_ms_per_request"] + r["db_cpu_ms_per_request"] for r in runs if "cpu_ms_per_request" in r]
            if len(sums) == len(runs):
                entry[name]["worker_and_db_cpu_ms_per_request"] = round(statistics.median(sums), 4)
    return report


def ratios(report: dict[str, Any], baseline: str) -> dict[str, dict[str, float]]:
    """The baseline's req/s divided by every other system's, per scenario (only where both ran it): with GAD as
    the baseline, "gad ÷ grupo_gad" above 1 is GAD's speed-up and "gad ÷ floor_hello" is its share of the floor."""
    out: dict[str, dict[str, float]] = {}
    for key, entry in report.items():
        if baseline in entry:
            out[key] = {name: round(entry[baseline]["rps"] / values["rps"], 2) for name, values in entry.items() if name != baseline and values["rps"]}
    return out


def cpu_ratios(report: dict[str, Any], baseline: str, figure: str = "cpu_ms_per_request") -> dict[str, dict[str, float]]:
    """Each other system's server CPU per request divided by the baseline's: with GAD as the baseline and a floor
    as the other, the share of the floor's speed GAD would reach on a core of its own. ``figure``
    "worker_and_db_cpu_ms_per_request": the same with the database's CPU added, the share it would reach where
    the worker and PostgreSQL share the cores, as here."""
    out: dict[str, dict[str, float]] = {}
    for key, entry in report.items():
        mine = entry.get(baseline, {}).get(figure)
        if mine:
            out[key] = {name: round(values[figure] / mine, 2) for name, values in entry.items() if name != baseline and figure in values}
    return out


def print_table(report: dict[str, Any], names: list[str], baseline: str) -> None:
    """req/s (p99 ms) per system, then the baseline's share of each other system by req/s and, for spawned
    systems, by the worker's CPU per request (ms) and by the worker's and the database's together — the CPU
    figures are what a shared machine disturbs least."""
    others = [n for n in names if n != baseline]
    header = ["scenario"] + [f"{n} req/s (p99 ms) [CPU ms/req; +db]" for n in names] + [f"{baseline} ÷ {n} (req/s; CPU; CPU+db)" for n in others]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    table_ratios, table_cpu = ratios(report, baseline), cpu_ratios(report, baseline)
    table_total = cpu_ratios(report, baseline, "worker_and_db_cpu_ms_per_request")
    for key, entry in report.items():
        cells = [key]
        for name in names:
            if name not in entry:
                cells.append("—")
                continue
            cpu, database = entry[name].get("cpu_ms_per_request"), entry[name].get("db_cpu_ms_per_request")
            spent = f" [{cpu}" + (f"; {database}" if database is not None else "") + "]" if cpu is not None else ""
            cells.append(f"{entry[name]['rps']:,} ({entry[name]['p99_ms']})" + spent)
        for name in others:
            cells.append(f"{table_ratios.get(key, {}).get(name, '—')}; {table_cpu.get(key, {}).get(name, '—')}; {table_total.get(key, {}).get(name, '—')}")
        print("| " + " | ".join(cells) + " |")


@contextmanager
def _floor(variant: str, database_url: str, server_cpu: str | None) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url, "WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING", "PORT": str(port)}
    command = [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py", f"bench.floor_app:{variant}"]
    proc = subprocess.Popen(_pinned(command, server_cpu), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url, _worker_of(proc.pid)  # taskset execs gunicorn: the pid is the master's
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _pinned(command: list[str], cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu, *command] if cpu else command


def _pin_cluster(postmaster: int, cpu: str) -> None:
    """Pin a running PostgreSQL cluster (the postmaster and every process it has started) to ``cpu``; backends it
    starts later inherit the postmaster's affinity."""
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    pids.append(int(entry.name))
            except OSError:
                continue
    for pid in pids:
        # A backend may exit between the listing and its pinning: only the postmaster's must succeed.
        subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], check=pid == postmaster, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", action="append", default=[], metavar="NAME=URL", help="a running system to measure (repeatable)")
    parser.add_argument("--spawn", action="store_true", help="also spawn GAD and the stack floors locally")
    parser.add_argument("--login", default=":".join(DEMO_ADMIN), metavar="EMAIL:PASSWORD", help="credentials for every --system")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="scenarios to run (default: all)")
    parser.add_argument("--concurrency", default="16", help="comma-separated client counts (default 16)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--baseline", help="system the ratios divide by (default: the first)")
    parser.add_argument("--server-cpu", help="taskset CPU list for spawned servers, e.g. 0")
    parser.add_argument("--client-cpu", help="taskset CPU list for the load client, e.g. 1")
    parser.add_argument(
        "--database-cpu", help="taskset CPU list for the spawned PostgreSQL, e.g. 1: off the server's core, as a database on a machine of its own is"
    )
    args = parser.parse_args()
    if not args.system and not args.spawn:
        parser.error("name at least one --system NAME=URL, or --spawn")
    if args.client_cpu and not wrk_available():
        # Without wrk the Python client runs as several processes on every core: the pinning asked for would not
        # happen, and the server would share its core with the client (session 19 measured create at 0.43 of its
        # floor that way, and 0.45 with wrk pinned, but health 1.01 against 0.83).
        parser.error("--client-cpu pins wrk, which is not installed (apt-get install wrk); without it the load client cannot be pinned")
    email, _, password = args.login.partition(":")
    systems = []
    for spec in args.system:
        name, _, url = spec.partition("=")
        systems.append(System(name, url.rstrip("/")))
    with ExitStack() as stack:
        if args.spawn:
            gad_url = stack.enter_context(spawned_server(workers=1, cpu=args.server_cpu))
            database_pid = int(os.environ["GAD_BENCH_DB_PID"])
            if args.database_cpu:
                _pin_cluster(database_pid, args.database_cpu)
            systems.insert(0, System("gad", gad_url, worker_pid=_worker_of(int(os.environ["GAD_BENCH_GUNICORN_PID"])), database_pid=database_pid))
            database_url = os.environ["GAD_BENCH_DB_URL"]
            for variant, scenarios in FLOOR_SCENARIOS.items():
                url, worker = stack.enter_context(_floor(variant.removeprefix("floor_"), database_url, args.server_cpu))
                systems.append(System(variant, url, scenarios, worker_pid=worker, database_pid=database_pid))
        for system in systems:
            if system.name not in FLOOR_SCENARIOS:
                _login(system, email, password)
                _prepare(system)
        for system in systems:
            if system.name in FLOOR_SCENARIOS:  # the floors read GAD's database: the same tarea
                system.tarea_id = systems[0].tarea_id
        started = time.monotonic()
        load_before = os.getloadavg()
        concurrency = [int(c) for c in args.concurrency.split(",")]
        report = compare(systems, args.scenario or list(SCENARIOS), concurrency, args.rounds, args.duration, args.client_cpu)
    names = [s.name for s in systems]
    baseline = args.baseline or names[0]
    # The machine's load average (1, 5, 15 min) before and after: these machines are shared, and BENCHMARKS.md records it.
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    summary = {
        "report": report,
        "ratios_to_" + baseline: ratios(report, baseline),
        "cpu_ratios_to_" + baseline: cpu_ratios(report, baseline),
        "worker_and_db_cpu_ratios_to_" + baseline: cpu_ratios(report, baseline, "worker_and_db_cpu_ms_per_request"),
        "client": "wrk" if wrk_available() else "python (processes on every core, unpinned)",
        "database_cpu": args.database_cpu or "unpinned",
        "seconds": round(time.monotonic() - started),
        "load_average": load,
    }
    print(json.dumps(summary, indent=2))
    print_table(report, names, baseline)


if __name__ == "__main__":
    main()
