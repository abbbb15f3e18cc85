"""The database itself: migrations round trip, domain rules enforced by PostgreSQL, cooperative psycopg2."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from flask import Flask

from gad.db_session import end_reads
from gad.extensions import db
from gad.models import Usuario
from tests.builders import Builders
from tests.conftest import recreate_database, start_gunicorn, stop_gunicorn
from tests.helpers import run_flask


def test_migrations_upgrade_check_downgrade_roundtrip(pg_server: str) -> None:
    url = recreate_database(pg_server, "gad_migrations")
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": url}
    for args in (("db", "upgrade"), ("db", "check"), ("db", "downgrade", "base"), ("db", "upgrade"), ("db", "check")):
        result = run_flask(env, *args)
        assert result.returncode == 0, f"flask {' '.join(args)} failed: {result.stderr}"
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchone() is not None
    conn.close()


# A usuario row as every revision since 0001 stores it (e-mail and DNI as the test writes them).
_INSERT_USUARIO = (
    "INSERT INTO usuarios (uuid, email, dni, nombre, apellido, nivel, password_hash, verificado, activo, intentos_fallidos, token_version,"
    " created_at, updated_at, version) VALUES (gen_random_uuid(), %s, %s, 'N', 'Apellido', 1, 'x', true, true, 0, 1, now(), now(), 1) RETURNING id"
)


@contextlib.contextmanager
def _database_at(pg_server: str, name: str, revision: str) -> Iterator[tuple[dict[str, str], Any]]:
    """A new database ``name`` taken up to ``revision`` by the real ``flask db upgrade``: the environment that points
    ``flask`` at it and an autocommit cursor, for a migration test to write the rows of that time."""
    url = recreate_database(pg_server, name)
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": url}
    upgraded = run_flask(env, "db", "upgrade", revision)
    assert upgraded.returncode == 0, upgraded.stderr
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield env, cur
    finally:
        conn.close()


def test_desasignacion_migration_widens_the_causa_check_and_its_downgrade_refuses_while_such_rows_exist(pg_server: str) -> None:
    """0004k: the new causa is stored after the upgrade; the downgrade says what to do instead of dropping or
    recasting the ledger's rows, and runs once they are gone, leaving the old CHECK."""
    with _database_at(pg_server, "gad_migrations_0004k", "0004k") as (env, cur):
        cur.execute(_INSERT_USUARIO, ("mig@gad.test", "12345678Z"))
        usuario_id = cur.fetchone()[0]
        insert = (
            "INSERT INTO notificaciones (usuario_id, causa, titulo, texto, prioridad, requiere_respuesta, creada_en)"
            " VALUES (%s, 'desasignacion', 'Desasignado: T-1', 't', 3, false, now())"
        )
        cur.execute(insert, (usuario_id,))
        refused = run_flask(env, "db", "downgrade", "0004h")
        assert refused.returncode != 0 and "1 notificaciones have causa 'desasignacion'" in refused.stderr, refused.stderr
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchone() == ("0004k",)
        cur.execute("DELETE FROM notificaciones WHERE causa = 'desasignacion'")
        downgraded = run_flask(env, "db", "downgrade", "0004h")
        assert downgraded.returncode == 0, downgraded.stderr
        with pytest.raises(psycopg2.errors.CheckViolation, match="ck_notificaciones_causa_valida"):
            cur.execute(insert, (usuario_id,))
        assert run_flask(env, "db", "upgrade").returncode == 0
        cur.execute(insert, (usuario_id,))


def test_identity_migration_rewrites_each_old_spelling_and_names_the_ones_that_would_merge(pg_server: str) -> None:
    """0004m: rows written before the API kept one spelling per e-mail and DNI take it, so a new account cannot
    be the same person under the new spelling; two rows that would become one are left for the operator."""
    with _database_at(pg_server, "gad_migrations_0004m", "0004k") as (env, cur):
        ids = {}
        for key, email, dni in [
            ("spelled", "jose\u0301@gad.test", "12.345.678-z"),
            ("wide", "\uff41na@gad.test", "\uff18\uff17\uff16\uff15\uff14\uff13\uff12\uff11X"),
            ("clash_a", "pedro@gad.test", "11111111-A"),
            ("clash_b", "pedro2@gad.test", "11111111a"),
            ("short", "luis@gad.test", "1-2-3-4"),
            ("plain", "ana2@gad.test", "22222222B"),
            ("dashed", "\u200bluz@gad.test\u200e", "33333333\u2013c\u200b"),
        ]:
            cur.execute(_INSERT_USUARIO, (email, dni))
            ids[key] = cur.fetchone()[0]
        upgraded = run_flask(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        cur.execute("SELECT id, email, dni FROM usuarios")
        rows = {row[0]: row[1:] for row in cur.fetchall()}
        assert rows[ids["spelled"]] == ("jos\u00e9@gad.test", "12345678Z")
        assert rows[ids["wide"]] == ("ana@gad.test", "87654321X")
        assert (rows[ids["clash_a"]][1], rows[ids["clash_b"]][1]) == ("11111111-A", "11111111a")  # which one is the person: not ours
        assert rows[ids["short"]][1] == "1-2-3-4" and rows[ids["plain"]] == ("ana2@gad.test", "22222222B")
        assert rows[ids["dashed"]] == ("luz@gad.test", "33333333C")
        said = upgraded.stdout + upgraded.stderr
        assert f"usuarios {ids['clash_a']}, {ids['clash_b']}" in said and f"usuario {ids['short']}'s dni" in said, said
        assert run_flask(env, "db", "downgrade", "0004k").returncode == 0  # changes nothing back: the older code reads these


def test_blank_text_migration_makes_older_empty_optional_text_null(pg_server: str) -> None:
    """0004n: an optional text the API stored as '' (sent as spaces) is null, as the API stores it now."""
    with _database_at(pg_server, "gad_migrations_0004n", "0004m") as (env, cur):
        efectivo = (
            "INSERT INTO efectivos (uuid, codigo_interno, nombre, rango, unidad, especialidad, estado_disponibilidad, estado_cambiado_en,"
            " created_at, updated_at, version) VALUES (gen_random_uuid(), %s, 'Agente', %s, %s, 'canina', 'disponible', now(), now(), now(), 1)"
            " RETURNING id"
        )
        cur.execute(efectivo, ("EF-1", "", ""))
        blank = cur.fetchone()[0]
        cur.execute(efectivo, ("EF-2", "Cabo", "Móvil 7"))
        kept = cur.fetchone()[0]
        upgraded = run_flask(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        cur.execute("SELECT id, rango, unidad, especialidad, version FROM efectivos ORDER BY id")
        assert cur.fetchall() == [(blank, None, None, "canina", 1), (kept, "Cabo", "Móvil 7", "canina", 1)]


def test_unidad_migration_rewrites_older_spellings_of_a_unidad_into_the_one_the_api_keeps(pg_server: str) -> None:
    """0004p: an efectivo and a turno written «Mo\u0301vil  101» before the API kept one spelling are «Móvil 101»
    after it, so an alert or a filter by that unidad finds them; no version moves."""
    with _database_at(pg_server, "gad_migrations_0004p", "0004n") as (env, cur):
        efectivo = (
            "INSERT INTO efectivos (uuid, codigo_interno, nombre, unidad, estado_disponibilidad, estado_cambiado_en,"
            " created_at, updated_at, version) VALUES (gen_random_uuid(), %s, 'Agente', %s, 'disponible', now(), now(), now(), 1) RETURNING id"
        )
        ids = {}
        for codigo, unidad in [("EF-1", "Mo\u0301vil  101"), ("EF-2", "\u200bMóvil 101\u00a0"), ("EF-3", "Móvil 101"), ("EF-4", "móvil 7"), ("EF-5", "\u200b")]:
            cur.execute(efectivo, (codigo, unidad))
            ids[codigo] = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO turnos (efectivo_id, unidad, tipo, periodo, created_at, updated_at, version)"
            " VALUES (%s, %s, 'servicio', tstzrange(now(), now() + interval '8 hours'), now(), now(), 1)",
            (ids["EF-1"], "Mo\u0301vil\t101"),
        )
        upgraded = run_flask(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        cur.execute("SELECT codigo_interno, unidad, version FROM efectivos ORDER BY codigo_interno")
        assert cur.fetchall() == [("EF-1", "Móvil 101", 1), ("EF-2", "Móvil 101", 1), ("EF-3", "Móvil 101", 1), ("EF-4", "móvil 7", 1), ("EF-5", None, 1)]
        cur.execute("SELECT unidad, version FROM turnos")
        assert cur.fetchall() == [("Móvil 101", 1)]


def test_cerrada_en_migration_dates_each_closed_tarea_by_its_closing_and_leaves_open_ones_null(pg_server: str) -> None:
    """0004q: a closed tarea takes the moment its history moved it into its estado (not its import note), else its
    fin_real, else its updated_at; an open one stays null. After it, a close that comes without the date (an older
    machine still serving during the rolling deploy) is dated by the database, and an open tarea cannot hold one."""
    with _database_at(pg_server, "gad_migrations_0004q", "0004p") as (env, cur):
        cur.execute(_INSERT_USUARIO, ("cerrada@gad.local", "11111111H"))
        creator = cur.fetchone()[0]
        tarea = (
            "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, creado_por_usuario_id, inicio_real, fin_real, created_at, updated_at, version)"
            " VALUES (gen_random_uuid(), %s, 'Tarea de antes', 'patrullaje', 3, %s, %s, %s, %s, '2026-01-01Z', %s, 2) RETURNING id"
        )
        rows = {
            "HIST-1": ("finalizada", "2026-01-02T08:00Z", "2026-01-02T09:00Z", "2026-01-05T00:00Z"),
            "FIN-1": ("finalizada", "2026-01-03T08:00Z", "2026-01-03T10:00Z", "2026-01-06T00:00Z"),
            "CAN-1": ("cancelada", None, None, "2026-01-07T00:00Z"),
            "OPEN-1": ("en_curso", "2026-01-04T08:00Z", None, "2026-01-08T00:00Z"),
        }
        ids = {}
        for codigo, (estado, inicio, fin, updated) in rows.items():
            cur.execute(tarea, (codigo, estado, creator, inicio, fin, updated))
            ids[codigo] = cur.fetchone()[0]
        historial = "INSERT INTO historial_estados (tarea_id, estado_anterior, estado_nuevo, created_at) VALUES (%s, %s, %s, %s)"
        cur.execute(historial, (ids["HIST-1"], "en_curso", "finalizada", "2026-01-02T09:00:05Z"))
        cur.execute(historial, (ids["CAN-1"], None, "cancelada", "2026-02-01T00:00Z"))  # an importer's note, written at the import
        upgraded = run_flask(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        cur.execute("SELECT codigo, to_char(cerrada_en AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM tareas ORDER BY codigo")
        assert cur.fetchall() == [
            ("CAN-1", "2026-01-07 00:00:00"),
            ("FIN-1", "2026-01-03 10:00:00"),
            ("HIST-1", "2026-01-02 09:00:05"),
            ("OPEN-1", None),
        ]
        with pytest.raises(psycopg2.errors.CheckViolation):
            cur.execute("UPDATE tareas SET cerrada_en = now() WHERE id = %s", (ids["OPEN-1"],))
        cur.execute("UPDATE tareas SET estado = 'cancelada' WHERE id = %s RETURNING cerrada_en IS NOT NULL", (ids["OPEN-1"],))
        assert cur.fetchone() == (True,)
        downgraded = run_flask(env, "db", "downgrade", "0004p")
        assert downgraded.returncode == 0, downgraded.stderr
        cur.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'tareas_cerrada_en'")
        assert cur.fetchone() == (0,)
        assert run_flask(env, "db", "upgrade").returncode == 0


def test_ending_the_reads_before_a_wait_refuses_to_commit_a_change_made_first(app: Flask, build: Builders) -> None:
    """``db_session.end_reads`` commits the request's transaction before a login's password hash: it must never be the
    commit of a change the request had not yet decided on (a change made before it is a mistake, said at once)."""
    usuario = build.usuario(1, nombre="Antes")
    with app.test_request_context():
        found = db.session.get(Usuario, usuario.id)
        assert found is not None
        end_reads()  # only read: committed, the row still loaded
        assert found.nombre == "Antes"
        found.nombre = "Cambiado"
        with pytest.raises(RuntimeError, match="after a change"):
            end_reads()
        db.session.rollback()
    with app.app_context():
        assert db.session.get(Usuario, usuario.id).nombre == "Antes"  # type: ignore[union-attr]


def test_database_enforces_domain_rules(app: Flask, build: Builders) -> None:
    admin = build.usuario(3)
    bad_rows = [
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version)"
        " VALUES (gen_random_uuid(), 'lower-case', 'Titulo valido', 'patrullaje', 3, 'programada', false, 0, {admin}, now(), now(), 1)",
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version)"
        " VALUES (gen_random_uuid(), 'OK-1', 'Tit', 'patrullaje', 3, 'programada', false, 0, {admin}, now(), now(), 1)",
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version, ubicacion_lat)"
        " VALUES (gen_random_uuid(), 'OK-2', 'Titulo valido', 'patrullaje', 3, 'programada', false, 0, {admin}, now(), now(), 1, 40.0)",
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version)"
        " VALUES (gen_random_uuid(), 'OK-3', 'Titulo valido', 'patrullaje', 3, 'EN_CURSO', false, 0, {admin}, now(), now(), 1)",
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, tiempo_pausado_s, creado_por_usuario_id, created_at, updated_at, version, inicio_programado, fin_programado)"
        " VALUES (gen_random_uuid(), 'OK-4', 'Titulo valido', 'patrullaje', 3, 'programada', false, 0, {admin}, now(), now(), 1, now(), now() - interval '1 hour')",
        "INSERT INTO usuarios (uuid, email, dni, nombre, apellido, nivel, password_hash, verificado, activo, intentos_fallidos, token_version, created_at, updated_at, version)"
        " VALUES (gen_random_uuid(), upper('{email}'), '99999999Z', 'N', 'Apellido', 1, 'x', true, true, 0, 1, now(), now(), 1)",
    ]
    conn = psycopg2.connect(os.environ["TEST_DATABASE_URL"])
    for statement in bad_rows:
        with pytest.raises(psycopg2.IntegrityError), conn.cursor() as cur:
            cur.execute(statement.format(admin=admin.id, email=admin.email))
        conn.rollback()
    conn.close()


def test_database_allows_one_active_assignment_per_efectivo(app: Flask, build: Builders) -> None:
    admin = build.usuario(3)
    efectivo = build.efectivo()
    first, second = build.tarea(admin), build.tarea(admin)
    build.asignacion(first, efectivo)
    with pytest.raises(Exception, match="uq_asignaciones_efectivo_activa"):
        build.asignacion(second, efectivo)


@pytest.mark.slow
def test_gevent_worker_runs_two_pg_sleeps_concurrently(database_url: str, tmp_path: Path) -> None:
    server = start_gunicorn(database_url, workers=1, app_spec="tests.support.sleepy_wsgi:app", tmp=tmp_path)
    try:
        requests.get(server.url + "/_test/pg-sleep", timeout=10)  # warm the pool
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: requests.get(server.url + "/_test/pg-sleep", timeout=10), range(2)))
        elapsed = time.monotonic() - started
    finally:
        stop_gunicorn(server)
    assert all(r.status_code == 200 for r in results)
    assert elapsed < 1.7, f"two pg_sleep(1) took {elapsed:.2f}s on one gevent worker: psycopg2 is blocking the hub"


def test_more_requests_at_once_than_pooled_connections_wait_for_one_instead_of_opening_sessions(database_url: str, build: Builders, tmp_path: Path) -> None:
    """Past DB_POOL_SIZE a request waits for a pooled connection: with overflow connections (closed again on
    return) sustained load opened a PostgreSQL session every few requests. Eight clients on a pool of two."""
    headers = build.headers(build.usuario(2))
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path, extra_env={"DB_POOL_SIZE": "2"})
    watcher = psycopg2.connect(database_url)
    watcher.autocommit = True

    def sessions_so_far() -> int:
        time.sleep(1.5)  # backends report their statistics at most once a second
        with watcher.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            return int(cur.fetchone()[0])

    try:
        with ThreadPoolExecutor(8) as pool:  # both pooled connections opened and the token cached before counting
            assert set(pool.map(lambda _: requests.get(server.url + "/api/v1/tasks?limit=5", headers=headers, timeout=30).status_code, range(32))) == {200}
        before = sessions_so_far()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: requests.get(server.url + "/api/v1/tasks?limit=5", headers=headers, timeout=30).status_code, range(400)))
        opened = sessions_so_far() - before
    finally:
        watcher.close()
        stop_gunicorn(server)
    assert statuses == [200] * 400
    assert opened <= 2, f"{opened} PostgreSQL sessions opened for 400 requests on a pool of 2"


def test_pooled_connection_cut_while_idle_is_replaced_before_the_request_sees_it(database_url: str, build: Builders) -> None:
    # Pinged only after idling (DB_PING_AFTER_IDLE_S), not on every checkout: a connection the server
    # dropped meanwhile (proxy idle timeout, restart) must still never reach a request.
    from tests.conftest import make_app

    app = make_app(database_url, DB_PING_AFTER_IDLE_S=0.2)
    client = app.test_client()
    headers = build.headers(build.usuario(2))
    assert client.get("/api/v1/tasks", headers=headers).status_code == 200  # leaves a connection in the pool
    from gad.extensions import db

    with app.app_context(), db.engine.connect() as connection:  # that same connection: the only one pooled
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin = psycopg2.connect(database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        # Only this app's connection: other apps of the session (the shared test app) keep theirs.
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert cur.fetchone()[0] is True
    admin.close()
    time.sleep(0.3)  # the idle threshold itself is what is under test
    assert client.get("/api/v1/tasks", headers=headers).status_code == 200
    with app.app_context():
        db.engine.dispose()


def test_a_streamed_cursor_still_open_at_commit_does_not_stay_with_the_pooled_connection(database_url: str) -> None:
    # Server-side cursors are declared WITH HOLD (psycopg2 runs in autocommit: gad.pg.install_begin_with_first_statement),
    # and one still open when its transaction commits survives the commit in the backend: the pool closes it
    # before the connection's next user gets it.
    from tests.conftest import make_app

    app = make_app(database_url, DB_POOL_SIZE=1)
    from gad.extensions import db

    with app.app_context():
        try:
            with db.engine.connect() as connection:
                streamed = connection.execution_options(stream_results=True, yield_per=10).exec_driver_sql("SELECT generate_series(1, 100000)")
                assert len(streamed.fetchmany(5)) == 5
                connection.commit()  # with the stream unfinished
                assert connection.exec_driver_sql("SELECT count(*) FROM pg_cursors WHERE is_holdable").scalar() >= 1
            with db.engine.connect() as connection:  # the pool's only connection, handed out again
                assert connection.exec_driver_sql("SELECT count(*) FROM pg_cursors").scalar() == 0
            del streamed
        finally:
            db.engine.dispose()


def test_a_commit_sent_with_its_statements_is_not_made_once_the_client_is_gone(app: Flask, database_url: str) -> None:
    # A request's last statement carries its COMMIT (gad.realtime.events._append). If the worker drops the
    # connection while that statement waits for a lock (a killed greenlet, a stopped worker), the client has seen
    # the request fail: the server must roll it back rather than commit it once the lock comes free
    # (client_connection_check_interval, config.py).
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["options"]
    holder = psycopg2.connect(database_url)
    holder.autocommit = True
    with holder.cursor() as cur:
        cur.execute(
            "DROP TABLE IF EXISTS probe_lock, probe_written; CREATE TABLE probe_lock (id int); INSERT INTO probe_lock VALUES (1); CREATE TABLE probe_written (id int)"
        )
    holder.autocommit = False
    waiting = psycopg2.connect(database_url, options=options)
    waiting.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM probe_lock FOR UPDATE")  # the lock the commit's statement waits for

        def send_and_wait() -> None:
            with contextlib.suppress(psycopg2.Error), waiting.cursor() as cur:
                cur.execute("BEGIN; SELECT 1 FROM probe_lock FOR UPDATE; INSERT INTO probe_written VALUES (1); COMMIT")

        sender = threading.Thread(target=send_and_wait, daemon=True)
        sender.start()
        time.sleep(0.5)
        with socket.socket(fileno=os.dup(waiting.fileno())) as client_side:
            client_side.shutdown(socket.SHUT_RDWR)  # the client is gone
        time.sleep(2.5)  # the server checks every second
        holder.commit()  # the lock comes free
        time.sleep(0.5)
        with holder.cursor() as cur:
            cur.execute("SELECT count(*) FROM probe_written")
            assert cur.fetchone()[0] == 0
    finally:
        holder.rollback()
        holder.autocommit = True
        with holder.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS probe_lock, probe_written")
        holder.close()
        with contextlib.suppress(psycopg2.Error):
            waiting.close()
