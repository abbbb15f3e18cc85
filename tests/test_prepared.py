"""Hot reads as server-side prepared statements (gad.pg.Prepared): planned once per connection, same answers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import gevent
import psycopg2
import psycopg2.extensions
import pytest
import requests
from flask import Flask
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, TRANSACTION_STATUS_INTRANS
from sqlalchemy import event, text
from sqlalchemy.event.base import _JoinedDispatcher
from sqlalchemy.exc import DataError, OperationalError

from gad import pg
from gad.db_session import read_row
from gad.errors import Forbidden, NotFound
from gad.extensions import db
from gad.models import Usuario
from gad.services import auth, tarea_json
from tests.builders import Builders
from tests.conftest import LiveServer
from tests.helpers import sent_to

PATHS = (
    "/api/v1/tasks/{id}",
    "/api/v1/tasks/{id}/historial",
    "/api/v1/tasks?limit=100",
    "/api/v1/tasks?limit=5&offset=1&sort=prioridad&estado=programada&q=PREP",
    "/api/v1/tasks?limit=5&tipo=patrullaje&prioridad_min=1",
    "/api/v1/efectivos?limit=5",
    "/api/v1/efectivos?limit=5&unidad=PREP&estado_disponibilidad=disponible&q=prep&en_servicio=false",
)
# Lists only a supervisor may read (an agente is refused before any statement).
SUPERVISOR_PATHS = (
    "/api/v1/users?limit=5",
    "/api/v1/users?nivel=1&activo=true&q=%40",
    "/api/v1/eventos?limit=2",
    "/api/v1/eventos?limit=5&entity_type=tarea&after_id=1&desde=2020-01-01T00:00:00Z",
)


def test_each_read_is_prepared_once_per_connection_then_executed_by_name(app_with: Callable[..., Flask], build: Builders) -> None:
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)  # one connection: "once per connection" is "once" here
    plain = app_with(DB_PREPARED_STATEMENTS=False)
    admin, agente = build.usuario(3), build.usuario(1)
    tarea = build.tarea(admin, codigo="PREP-1", delegado_usuario_id=agente.id)
    build.efectivo(usuario_id=agente.id, unidad="PREP", nombre="Prep Uno")
    principal_name, principal_prepared = auth._PRINCIPAL._compile()[0], 0
    for reader in (admin, agente):
        headers = build.headers(reader)
        for path in (p.format(id=tarea.id) for p in PATHS + (SUPERVISOR_PATHS if reader is admin else ())):
            with sent_to(app) as sent:
                first = app.test_client().get(path, headers=headers)
                second = app.test_client().get(path, headers=headers)
            with sent_to(plain) as sent_plain:
                expected = plain.test_client().get(path, headers=headers)
            assert first.status_code == second.status_code == expected.status_code == 200, (path, first.get_json())
            # The same document either way (the ETag too): the prepared path changes how, not what.
            assert first.get_data() == second.get_data() == expected.get_data(), path
            assert first.headers.get("ETag") == expected.headers.get("ETag")
            # The caller's own statement (auth: the usuario read where the token cache has no entry yet) is prepared
            # too, once for the whole test; the read's own statement is what is counted here.
            principal = [s for s in sent if principal_name in s]
            principal_prepared += sum(s.startswith("PREPARE ") for s in principal)
            prepares = [s for s in sent if s.startswith("PREPARE ") and s not in principal]
            executes = [s for s in sent if s.startswith("EXECUTE ") and s not in principal]
            assert len(prepares) <= 1 and len(executes) == 2, (path, sent)  # at most once: an earlier path may share it
            assert not [s for s in sent_plain if s.startswith(("PREPARE ", "EXECUTE "))], sent_plain
    assert principal_prepared == 1


def test_ids_no_row_can_have_never_reach_the_database(app_with: Callable[..., Flask], build: Builders) -> None:
    """An id beyond PostgreSQL's integer names nothing: 404 for the tarea, 422 naming a list filter (it would
    not fit the prepared statement's parameter), and the connection goes on serving."""
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    admin = build.usuario(3)
    tarea = build.tarea(admin)
    headers = build.headers(admin)
    client = app.test_client()
    for _ in range(2):
        for path in ("/api/v1/tasks/2147483648", "/api/v1/tasks/99999999999999999999999", "/api/v1/tasks/2147483648/historial"):
            missing = client.get(path, headers=headers)
            assert missing.status_code == 404 and missing.mimetype == "application/problem+json", (path, missing.get_data())
        for name in ("delegado_usuario_id", "efectivo_id"):
            beyond = client.get(f"/api/v1/tasks?{name}=2147483648", headers=headers)
            assert beyond.status_code == 422 and f"query.{name}" in {e["field"] for e in beyond.get_json()["errors"]}, beyond.get_json()
            assert client.get(f"/api/v1/tasks?{name}=2147483647", headers=headers).get_json()["total"] == 0
        assert client.get(f"/api/v1/tasks/{tarea.id}", headers=headers).status_code == 200


def test_a_prepared_statement_fails_as_any_sqlalchemy_statement_would(app_with: Callable[..., Flask], database_url: str) -> None:
    """Prepared statements run on the driver's cursor (gad.pg.send), yet fail as SQLAlchemy's own would: a bad
    value is its DataError and the connection goes on; a connection the server ended is a disconnect that
    replaces the whole pool (every connection as old may be as dead), so one request fails, not one per
    pooled connection."""
    app = app_with(DB_POOL_SIZE=2, DB_MAX_OVERFLOW=0, DB_PING_AFTER_IDLE_S=3600)  # no ping would save them
    add_one = pg.Prepared(text("SELECT CAST(:x AS integer) + 1"))
    with app.app_context():
        with db.engine.connect() as first, db.engine.connect() as second:  # both pooled connections, each prepared
            pids = [connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() for connection in (first, second)]
            assert [tuple(add_one.first(connection, {"x": "41"}) or ()) for connection in (first, second)] == [(42,), (42,)]
        with db.engine.connect() as connection:
            with pytest.raises(DataError):
                add_one.first(connection, {"x": "forty-one"})
            connection.rollback()
            assert tuple(add_one.first(connection, {"x": "1"}) or ()) == (2,)
        admin = psycopg2.connect(database_url)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        admin.close()
        with db.engine.connect() as connection, pytest.raises(OperationalError) as ended:
            add_one.first(connection, {"x": "1"})
        assert ended.value.connection_invalidated
        with db.engine.connect() as first, db.engine.connect() as second:  # the other one, ended too, went with the pool
            for connection in (first, second):
                assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() not in pids
                assert tuple(add_one.first(connection, {"x": "2"}) or ()) == (3,)


def test_statements_reach_cursor_listeners_only_when_one_is_there(app_with: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """``gad.pg.send`` asks, as SQLAlchemy's own execution does, whether the engine or connection has listeners
    before walking them. The service registers none (pool and dialect events only), so a statement walks
    nothing; a listener added later (the tests' statement counters) sees every statement, before and after."""
    app = app_with()
    add_one = pg.Prepared(text("SELECT CAST(:x AS integer) + 1"))
    walked: list[str] = []
    joined_lookup = _JoinedDispatcher.__getattr__

    def recording_lookup(dispatcher: Any, name: str) -> Any:
        walked.append(name)
        return joined_lookup(dispatcher, name)

    monkeypatch.setattr(_JoinedDispatcher, "__getattr__", recording_lookup)
    with app.app_context():
        engine = db.engine
        assert not engine._has_events
        with engine.connect() as connection:
            assert tuple(add_one.first(connection, {"x": "1"}) or ()) == (2,)
        assert not {"before_cursor_execute", "after_cursor_execute"} & set(walked)  # nothing to walk, nothing walked
        with engine.connect() as connection:  # a listener on one connection only
            on_connection: list[str] = []
            event.listen(connection, "before_cursor_execute", lambda _c, _cur, statement, *_: on_connection.append(statement))
            assert tuple(add_one.first(connection, {"x": "3"}) or ()) == (4,)
            assert len(on_connection) == 1 and on_connection[0].startswith("EXECUTE")
        seen: list[tuple[str, str]] = []
        before = lambda _c, _cur, statement, *_: seen.append(("before", statement))  # noqa: E731
        after = lambda _c, _cur, statement, *_: seen.append(("after", statement))  # noqa: E731
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        try:
            with engine.connect() as connection:
                assert tuple(add_one.first(connection, {"x": "2"}) or ()) == (3,)
                assert tuple(pg.send(connection, "SELECT 7", {}, fetch=True) or ()) == (7,)
        finally:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)
    sent = [statement for moment, statement in seen if moment == "before"]
    assert [statement for moment, statement in seen if moment == "after"] == sent
    assert any(statement.startswith("EXECUTE") for statement in sent) and sent[-1] == "SELECT 7"


def test_a_statement_killed_midway_hands_back_a_connection_the_pool_replaces(app_with: Callable[..., Flask]) -> None:
    """A request greenlet killed while its statement runs (shutdown, a gevent Timeout) ends with that kill, not
    with a driver error from a rollback sent on the connection psycopg2 closed under it; the pool's next user
    gets a new session."""
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_PING_AFTER_IDLE_S=3600)
    seen: dict[str, Any] = {}

    def statement() -> None:
        with app.app_context(), db.engine.connect() as connection:
            seen["pid"] = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            pg.send(connection, "SELECT pg_sleep(5)", {})

    pg.install_wait_callback()  # as in a gunicorn gevent worker: waits on the server yield to the hub
    try:
        killed = gevent.spawn(statement)
        gevent.sleep(0.5)
        killed.kill()
        assert isinstance(killed.value, gevent.GreenletExit) and killed.exception is None, killed.exception
        with app.app_context(), db.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != seen["pid"]
    finally:
        psycopg2.extensions.set_wait_callback(None)


def _the_only_connection(app: Flask) -> Any:
    with app.app_context():
        return db.engine.raw_connection()


@pytest.mark.parametrize("lose", ["statements", "bookkeeping"])
def test_a_connection_out_of_step_with_its_statements_is_replaced(app_with: Callable[..., Flask], build: Builders, lose: str) -> None:
    """If the server and the bookkeeping ever disagree (statements dropped behind its back, or a PREPARE the
    bookkeeping missed), that request is a 503 to retry and the connection is replaced: the next one works."""
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    admin = build.usuario(3)
    tarea = build.tarea(admin)
    headers = build.headers(admin)
    client = app.test_client()
    assert client.get(f"/api/v1/tasks/{tarea.id}", headers=headers).status_code == 200
    raw = _the_only_connection(app)
    try:
        if lose == "statements":
            with raw.cursor() as cursor:
                cursor.execute("DEALLOCATE ALL")
            raw.commit()
        else:
            raw.info[pg._PREPARED_KEY].clear()
    finally:
        raw.close()
    failed = client.get(f"/api/v1/tasks/{tarea.id}", headers=headers)
    assert failed.status_code == 503 and failed.headers["Retry-After"] and failed.mimetype == "application/problem+json", failed.get_data()
    for _ in range(2):
        assert client.get(f"/api/v1/tasks/{tarea.id}", headers=headers).status_code == 200


def test_a_connection_past_its_statement_limit_drops_them_and_goes_on(app_with: Callable[..., Flask], build: Builders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "MAX_PREPARED_PER_CONNECTION", 2)
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    admin = build.usuario(3)
    tarea = build.tarea(admin, codigo="PREP-2")
    headers = build.headers(admin)
    client = app.test_client()
    paths = [p.format(id=tarea.id) for p in PATHS]
    with sent_to(app) as sent:
        answers = [client.get(path, headers=headers) for path in paths * 2]
    assert all(a.status_code == 200 for a in answers), [a.get_json() for a in answers]
    assert [a.get_data() for a in answers[: len(paths)]] == [a.get_data() for a in answers[len(paths) :]]
    # One statement at a time goes, the least recently used: never all of them.
    assert "DEALLOCATE ALL" not in sent and sum(s.startswith("DEALLOCATE gad_") for s in sent) >= len(paths)
    assert sum(s.startswith("PREPARE ") for s in sent) > len(paths)  # prepared again after being dropped


def test_the_statement_in_use_stays_prepared_while_rarer_ones_come_and_go(
    app_with: Callable[..., Flask], build: Builders, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Room for the two statements every request here runs (the caller's usuario, auth._PRINCIPAL, and the tarea
    # read) and one list shape at a time: the four list shapes come and go through that one slot.
    monkeypatch.setattr(pg, "MAX_PREPARED_PER_CONNECTION", 3)
    monkeypatch.setattr(tarea_json, "_PAGES", pg.PreparedShapes(2))  # two shapes, and none an earlier test left
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    admin = build.usuario(3)
    tarea = build.tarea(admin, codigo="PREP-7")
    headers = build.headers(admin)
    client = app.test_client()
    lists = ["/api/v1/tasks?limit=5", "/api/v1/tasks?q=PREP", "/api/v1/tasks?prioridad_min=1", "/api/v1/tasks?sort=prioridad"]
    with sent_to(app) as sent:
        for path in lists * 2:
            assert client.get(f"/api/v1/tasks/{tarea.id}", headers=headers).status_code == 200
            listed = client.get(path, headers=headers)
            assert listed.status_code == 200 and listed.get_json()["total"] == 1, (path, listed.get_json())
    one = tarea_json._one()[0]._compile()[1]
    assert sent.count(one) <= 1  # the tarea read, used between every list, was never dropped
    assert len(tarea_json._PAGES) <= 2  # and the process keeps only the list shapes in recent use


def test_a_read_before_the_request_opens_its_transaction_runs_alone_in_autocommit(app: Flask, build: Builders) -> None:
    """A caller from the token cache opens no session: its one-statement read runs without BEGIN/COMMIT and
    answers what the same read inside a transaction answers (found, forbidden, missing, the list)."""
    admin, agente = build.usuario(3), build.usuario(1)
    mine = build.tarea(admin, codigo="PREP-3", delegado_usuario_id=agente.id)
    other = build.tarea(admin, codigo="PREP-4")
    states: list[tuple[str, int]] = []

    def transaction_state(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        states.append((statement.split(" ", 1)[0], conn.connection.dbapi_connection.info.transaction_status))

    with app.app_context():
        readers = [db.session.get(Usuario, u.id) for u in (admin, agente)]
        db.session.expunge_all()
        db.session.remove()
        event.listen(db.engine, "after_cursor_execute", transaction_state)
        try:
            for reader in readers:
                assert reader is not None
                calls = (
                    lambda reader=reader: tarea_json.tarea_json(reader, mine.id),
                    lambda reader=reader: tarea_json.historial_json(reader, mine.id),
                    lambda reader=reader: tarea_json.page_json(reader, {"sort": None}, 50, 0),
                    lambda reader=reader: tarea_json.tarea_json(reader, other.id),
                    lambda reader=reader: tarea_json.tarea_json(reader, 10**9),
                )
                for call in calls:
                    _answer(call)  # prepares the statement on the connection if it is the first use
                    states.clear()
                    alone = _answer(call)
                    assert not db.session.registry.has(), "a read alone must not build the ORM session"
                    # Nothing left open, so no BEGIN was sent (the pool may hand out a connection that PREPAREs first).
                    assert states and states[-1][0] == "EXECUTE" and {state for _, state in states} == {TRANSACTION_STATUS_IDLE}, states
                    states.clear()
                    db.session.connection()  # the request's transaction is open: the read joins it
                    assert _answer(call) == alone
                    assert states and states[-1] == ("EXECUTE", TRANSACTION_STATUS_INTRANS), states
                    db.session.remove()
        finally:
            event.remove(db.engine, "after_cursor_execute", transaction_state)


def next_statement_opens_a_transaction() -> None:
    """The pool's connection (a pool of one, in an app context) has nothing open, and a statement SQLAlchemy runs
    in a transaction opens one on the server."""
    with db.engine.connect() as connection:
        dbapi_connection: Any = connection.connection.dbapi_connection
        assert dbapi_connection.info.transaction_status == TRANSACTION_STATUS_IDLE  # nothing left open
        connection.exec_driver_sql("SELECT 1")
        assert dbapi_connection.info.transaction_status == TRANSACTION_STATUS_INTRANS
        connection.rollback()
        assert dbapi_connection.info.transaction_status == TRANSACTION_STATUS_IDLE


def test_a_read_alone_hands_its_connection_back_out_of_autocommit(app_with: Callable[..., Flask], build: Builders) -> None:
    """The read alone runs its statement without a transaction: a connection going back to the pool with that
    state would turn the next request's writes into statements committed one by one. The next transactional
    statement on the same connection opens its transaction (psycopg2 runs in autocommit and GAD sends the
    BEGIN with that statement, gad.pg.install_begin_with_first_statement). Also when the read fails, and when
    the connection was replaced (out of step with its statements)."""
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    admin = build.usuario(3)
    tarea = build.tarea(admin)
    failing = pg.Prepared(text("SELECT 1 / CAST(:zero AS integer)"))

    with app.app_context():
        reader = db.session.get(Usuario, admin.id)
        assert reader is not None
        db.session.expunge_all()
        db.session.remove()
        assert tarea_json.tarea_json(reader, tarea.id)
        with pytest.raises(DataError):  # division by zero, raised by PostgreSQL
            read_row(failing, {"zero": 0})
        next_statement_opens_a_transaction()
        raw = _the_only_connection(app)
        try:
            raw.info[pg._PREPARED_KEY].clear()  # out of step: the next read is a 503 and replaces the connection
        finally:
            raw.close()
        with pytest.raises(OperationalError):  # answered 503 at the edge
            tarea_json.tarea_json(reader, tarea.id)
        assert tarea_json.tarea_json(reader, tarea.id)
        next_statement_opens_a_transaction()


def test_a_read_alone_on_a_connection_pinged_after_idling(app_with: Callable[..., Flask], build: Builders) -> None:
    """The idle ping (gad.pg.install_idle_ping) runs on checkout, before the read: it must leave no transaction
    open (with psycopg2 out of autocommit, its SELECT 1 opened one, and a read alone then failed: a 500)."""
    app = app_with(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_PING_AFTER_IDLE_S=0.2)
    admin = build.usuario(3)
    tarea = build.tarea(admin)
    with app.app_context():
        reader = db.session.get(Usuario, admin.id)
        assert reader is not None
        db.session.expunge_all()
        db.session.remove()
        idled: list[float] = []

        def idle_at_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            idled.append(time.monotonic() - record.info["idle_since"])

        event.listen(db.engine, "checkout", idle_at_checkout)
        try:
            for _ in range(3):
                time.sleep(0.3)  # idle past the threshold: the next checkout pings
                assert json.loads(tarea_json.tarea_json(reader, tarea.id)[0])["id"] == tarea.id
                assert json.loads(tarea_json.page_json(reader, {"sort": None}, 5, 0))["total"] >= 1
        finally:
            event.remove(db.engine, "checkout", idle_at_checkout)
        assert len([seconds for seconds in idled if seconds >= 0.2]) >= 3, idled  # the pings were due
        next_statement_opens_a_transaction()


def _answer(call: Callable[..., Any]) -> Any:
    try:
        return call()
    except (NotFound, Forbidden) as exc:
        return type(exc).__name__


def test_reads_from_the_token_cache_answer_like_any_other_over_http(live_server: LiveServer, build: Builders) -> None:
    admin, agente = build.usuario(3), build.usuario(1)
    mine = build.tarea(admin, codigo="PREP-5", delegado_usuario_id=agente.id)
    other = build.tarea(admin, codigo="PREP-6")
    for usuario in (admin, agente):
        headers = build.headers(usuario)
        for _ in range(3):  # the first verifies the token against the database; the next ones reuse it
            got = live_server.get(f"/api/v1/tasks/{mine.id}", headers=headers)
            assert got.status_code == 200 and got.json()["codigo"] == "PREP-5" and got.headers["ETag"] == f'"{got.json()["version"]}"'
            listed = live_server.get("/api/v1/tasks?limit=100&q=PREP-", headers=headers)
            assert listed.status_code == 200 and "PREP-5" in {t["codigo"] for t in listed.json()["items"]}
            assert live_server.get(f"/api/v1/tasks/{mine.id}/historial", headers=headers).status_code == 200
            assert live_server.get("/api/v1/tasks/999999999", headers=headers).status_code == 404
        forbidden = live_server.get(f"/api/v1/tasks/{other.id}", headers=headers)
        assert forbidden.status_code == (200 if usuario is admin else 403), forbidden.text
    # A write, then a read from the cache: the read sees it (no transaction of an earlier read lingers).
    admin_headers = build.headers(admin)
    changed = requests.patch(live_server.url + f"/api/v1/tasks/{mine.id}", json={"titulo": "Cambiado"}, headers=admin_headers, timeout=10)
    assert changed.status_code == 200, changed.text
    assert live_server.get(f"/api/v1/tasks/{mine.id}", headers=admin_headers).json()["titulo"] == "Cambiado"
