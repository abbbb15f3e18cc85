"""psycopg2 process-wide settings: instants that read back, pings for pooled connections left idle, a gevent wait callback with deadlines."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

logger = logging.getLogger(__name__)

_TIMESTAMPTZ_OID = 1184
_YEAR = re.compile(r"^\s*(\d+)")


def _read_timestamptz(value: str | None, cursor: Any) -> datetime | None:
    """psycopg2's own reading, except that an instant Python cannot represent becomes datetime.min/max.

    PostgreSQL keeps instants up to year 294276; Python stops at 9999. One such row (stored before the
    CHECK constraints of migration 0004b, or restored from an old dump) used to make every list that
    included it answer 500. Reads must never die on a stored value, so it is clamped and logged.
    """
    try:
        return psycopg2.extensions.PYDATETIMETZ(value, cursor)
    except ValueError:
        assert value is not None
        match = _YEAR.match(value)
        far_future = match is not None and int(match.group(1)) > 9999 and not value.rstrip().endswith("BC")
        logger.warning("timestamp %r is outside what Python represents; read as %s", value, "max" if far_future else "min")
        return datetime.max.replace(tzinfo=UTC) if far_future else datetime.min.replace(tzinfo=UTC)


_SAFE_TIMESTAMPTZ = psycopg2.extensions.new_type((_TIMESTAMPTZ_OID,), "GAD_TIMESTAMPTZ", _read_timestamptz)


def install_typecasters() -> None:
    """Register the tolerant timestamptz reader for every connection of the process (idempotent)."""
    psycopg2.extensions.register_type(_SAFE_TIMESTAMPTZ)


# --- pinging pooled connections that sat idle ---------------------------------------------------------


def install_idle_ping(engine: Engine, seconds: float) -> None:
    """Ping a pooled connection of ``engine`` before use only when it sat idle ``seconds`` or more (0:
    SQLAlchemy's pool_pre_ping pings every checkout instead, and this installs nothing).

    A connection that just served a request is alive; the ones that die are those left idle, cut by a
    proxy's idle timeout, a failover or a server restart. Pinging only those saves a round trip on almost
    every request. A failed ping raises DisconnectionError, on which the pool discards that connection and
    checks out (or opens) another, so the request never sees the dead one.
    """
    if not seconds:
        return

    def mark_idle(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < seconds:
            return
        # In autocommit: a ping must not leave a transaction open behind the request's back (a read meant to
        # run alone, db_session.read_row, would run inside it; its snapshot would not be the statement's own).
        try:
            previous, dbapi_connection.autocommit = dbapi_connection.autocommit, True
            try:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            finally:
                if not dbapi_connection.closed:
                    dbapi_connection.autocommit = previous
        except psycopg2.Error as exc:
            raise DisconnectionError(f"pooled connection failed its ping after idling: {exc}") from exc

    event.listen(engine, "connect", mark_idle)
    event.listen(engine, "checkin", mark_idle)
    event.listen(engine, "checkout", ping_if_idle)


# --- waiting on the server under gevent ---------------------------------------------------------------

# Beyond the statement timeout, how long a query may go without a byte from the server before the
# connection is given up. A live server cancels the query itself at statement_timeout; only a frozen
# one (SIGSTOP, a hung host) stays silent past this margin, and then the kernel still acknowledges
# every packet, so no TCP keepalive or user timeout would ever fire.
QUERY_WAIT_MARGIN_S = 2.0
_STATEMENT_TIMEOUT = re.compile(r"statement_timeout\s*=\s*(\d+)")
_connected: weakref.WeakSet[Any] = weakref.WeakSet()
_deadlines: weakref.WeakKeyDictionary[Any, tuple[float | None, float | None]] = weakref.WeakKeyDictionary()


def _timeouts(conn: Any) -> tuple[float | None, float | None]:
    """(connect, query) bounds in seconds, read from the connection's own parameters (None: unbounded)."""
    cached = _deadlines.get(conn)
    if cached is not None:
        return cached
    params = conn.get_dsn_parameters()
    connect = float(params["connect_timeout"]) if params.get("connect_timeout", "0") not in {"", "0"} else None
    match = _STATEMENT_TIMEOUT.search(params.get("options", ""))
    statement_ms = int(match.group(1)) if match else 0
    query = statement_ms / 1000 + QUERY_WAIT_MARGIN_S if statement_ms else None
    _deadlines[conn] = (connect, query)
    return connect, query


def gevent_wait_callback(conn: Any, timeout: float | None = None) -> None:
    """psycogreen's callback with deadlines: yield to the hub while libpq waits, but never forever.

    In asynchronous (green) mode libpq does not apply ``connect_timeout`` itself, and nothing bounds a
    query on a server that stopped answering. Raising from here makes psycopg2 close the connection; an
    OperationalError on a closed connection is what SQLAlchemy treats as a disconnect (the pool drops it)
    and what the request edge answers with 503.
    """
    from gevent.socket import wait_read, wait_write

    connecting = conn not in _connected
    connect_s, query_s = _timeouts(conn)
    bound = connect_s if connecting else query_s
    deadline = None if bound is None else time.monotonic() + bound
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            if connecting:
                _connected.add(conn)
            return
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise psycopg2.OperationalError(f"no answer from the database server within {bound:g} s ({'connect' if connecting else 'query'})")
        try:
            if state == psycopg2.extensions.POLL_READ:
                wait_read(conn.fileno(), timeout=remaining)
            elif state == psycopg2.extensions.POLL_WRITE:
                wait_write(conn.fileno(), timeout=remaining)
            else:
                raise psycopg2.OperationalError(f"bad result from poll: {state!r}")
        except TimeoutError:
            continue  # the next turn reports the expired deadline


def install_wait_callback() -> None:
    """Make psycopg2 cooperative under gevent (replaces psycogreen's patch_psycopg)."""
    psycopg2.extensions.set_wait_callback(gevent_wait_callback)


# --- statements PostgreSQL plans once per connection ---------------------------------------------------

PREPARED_OPTION = "gad_prepared_statements"  # an engine execution option: install_prepared_statements
_PREPARED_KEY = "gad_prepared"  # in the pooled connection's info: the names PREPAREd on it, least recently used first
# A connection keeps at most this many statements: each holds its plans in the backend (a tarea list's
# ~270 kB), and the list has one statement per combination of filters. Past it, the least recently used
# one is dropped, so the few shapes in daily use stay prepared whatever an unusual query string adds.
MAX_PREPARED_PER_CONNECTION = 16
# The server no longer has (26000) or already has (42P05) a statement the bookkeeping says otherwise of, or
# a schema change altered a statement's result type (0A000): the connection is replaced, the request is a 503.
_OUT_OF_STEP = frozenset({"26000", "42P05", "0A000"})


def install_prepared_statements(engine: Engine, enabled: bool) -> None:
    """Let ``Prepared`` statements run by name on ``engine``'s connections (False: they run as plain SQL,
    for poolers such as PgBouncer in transaction mode, where a session's PREPARE is not seen by the next
    transaction's server connection)."""
    engine.update_execution_options(**{PREPARED_OPTION: enabled})


class Prepared:
    """A statement PostgreSQL parses and plans once per connection (``PREPARE``), then runs by name.

    GAD's tarea document — some forty fields, the assignments sub-select and the read rule — took
    PostgreSQL longer to plan than to run (0.3 of 0.45 ms per GET), and SQLAlchemy spent more CPU
    walking and cache-keying the statement's tree on each call than the round trip itself. A Prepared is
    compiled once per process; each connection prepares it on first use (a round trip of its own, so an
    EXECUTE that fails leaves it prepared and known as such) and from then on sends only
    ``EXECUTE name(values)`` on the same SQLAlchemy connection's cursor (``send``), so its errors, events
    and statement counters are those of any other statement. Statements whose shape varies per request (a
    list's filters) get one Prepared per shape, with every varying value a named bind parameter. Values
    reach psycopg2 as given (no SQLAlchemy type processing): ints, strings, lists, datetimes; rows come
    back as psycopg2 reads them (tuples), read by position.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: tuple[str, str, str, dict[str, Any], tuple[str, ...]] | None = None
        self._plain_sql: str | None = None

    def _compile(self) -> tuple[str, str, str, dict[str, Any], tuple[str, ...]]:
        if self._compiled is None:
            from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

            compiled = self.statement.compile(dialect=PGDialect_psycopg2(paramstyle="numeric_dollar"))
            sql = str(compiled)
            # Text compiled for psycopg2 elsewhere (json_sql.frozen) doubles its percent signs; sent verbatim
            # here, a doubled one would change what the statement means.
            if "%%" in sql:
                raise ValueError(f"a prepared statement must not embed text escaped for psycopg2: {sql[:200]}")
            order = tuple(dict.fromkeys(compiled.positiontup or ()))
            name = "gad_" + hashlib.sha256(sql.encode()).hexdigest()[:24]
            # Positional: psycopg2 took twice as long to fill in named parameters as a tuple of the same values
            # (a create's eighteen: 25 against 12 µs), looking each one up in the dict and formatting by name.
            execute = f"EXECUTE {name}" + ("(" + ", ".join("%s" for _ in order) + ")" if order else "")
            # Values fixed when the statement was built (constants SQLAlchemy binds); a required one missing
            # from a call fails loudly (KeyError) rather than running as NULL.
            values = compiled.construct_params(_check=False)
            defaults = {bind: values[bind] for bind in order if not compiled.binds[bind].required}
            self._compiled = (name, f"PREPARE {name} AS {sql}", execute, defaults, order)
        return self._compiled

    def _plain(self) -> str:
        """The statement as psycopg2 runs it with named parameters, for ``then`` on a connection that prepares nothing."""
        if self._plain_sql is None:
            from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

            self._plain_sql = str(self.statement.compile(dialect=PGDialect_psycopg2()))
        return self._plain_sql

    def first(self, connection: Connection, params: dict[str, Any]) -> Sequence[Any] | None:
        """The statement's first row (as psycopg2 reads it: a tuple), or None."""
        return self._run(connection, params, fetch=True)

    def run(self, connection: Connection, params: dict[str, Any], *, then: str = "") -> None:
        """The statement, for what it writes. ``then``: statements sent after it in the same round trip (a
        ``COMMIT``), which take no parameters and return no rows."""
        self._run(connection, params, fetch=False, then=then)

    def _run(self, connection: Connection, params: dict[str, Any], *, fetch: bool, then: str = "") -> Any:
        if not connection.get_execution_options().get(PREPARED_OPTION, False):
            if then:
                return send(connection, f"{self._plain()}; {then}", params, fetch=fetch)
            result = connection.execute(self.statement, params)
            return result.first() if fetch else None
        name, prepare, execute, defaults, order = self._compile()
        prepared: OrderedDict[str, None] = connection.connection.info.setdefault(_PREPARED_KEY, OrderedDict())
        try:
            if name in prepared:
                prepared.move_to_end(name)
            else:
                if len(prepared) >= MAX_PREPARED_PER_CONNECTION:
                    oldest = next(iter(prepared))
                    connection.exec_driver_sql(f"DEALLOCATE {oldest}", execution_options={"no_parameters": True})
                    del prepared[oldest]
                connection.exec_driver_sql(prepare, execution_options={"no_parameters": True})
                prepared[name] = None
            values = defaults | params if defaults else params
            return send(connection, f"{execute}; {then}" if then else execute, tuple(map(values.__getitem__, order)), fetch=fetch)
        except DBAPIError as exc:
            if exc.orig is not None and getattr(exc.orig, "pgcode", None) in _OUT_OF_STEP:
                connection.invalidate()  # a new connection starts with no statements and an empty record
                raise OperationalError(exc.statement, exc.params, exc.orig) from exc
            raise
        except BaseException:
            # Interrupted between the server's answer and the bookkeeping (a killed greenlet, a failing
            # event listener): what this connection has prepared is no longer known, so it is not reused.
            connection.invalidate()
            raise


def send(connection: Connection, statement: str, parameters: dict[str, Any] | tuple[Any, ...], *, fetch: bool = False) -> Sequence[Any] | None:
    """Run one statement of known shape on ``connection``'s psycopg2 cursor and return its first row (``fetch``)
    or None, without the result object SQLAlchemy would build for it.

    For SQL given as a string (``exec_driver_sql``, and so every ``Prepared``'s ``EXECUTE``) SQLAlchemy builds
    the result's column metadata from the cursor's description on every execution — name decoding and a type
    lookup per column, half of its per-statement cost, for rows GAD reads by position — while compiled
    statements get theirs from their cache. Everything else SQLAlchemy does around a statement is kept: it
    begins its transaction as it would (autobegin), ``before_cursor_execute`` and ``after_cursor_execute``
    listeners see the statement (the test suite's statement counters), the transaction is opened with the
    statement as ``install_begin_with_first_statement`` does, and a driver error goes through the connection's
    own handling (wrapped as ``DBAPIError``; on a disconnect the connection and the pool are invalidated). The
    listeners get no execution context (None): none of GAD's needs one, and one that does must not be added
    without moving its statements back to ``exec_driver_sql``."""
    if not connection.in_transaction():
        connection.begin()  # SQLAlchemy's autobegin, so its commit and rollback know of the transaction
    options = connection.get_execution_options()
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None  # a checked-out connection
    cursor = dbapi_connection.cursor()
    # Whether any listener could be there, asked as SQLAlchemy's own execution asks it: walking the listener
    # collections costs each statement more than the answer (a fresh connection joins its engine's anew).
    dispatching = connection._has_events or connection.engine._has_events
    try:
        if dispatching:
            for before in connection.dispatch.before_cursor_execute:
                statement, parameters = before(connection, cursor, statement, parameters, None, False)
        cursor.execute(("BEGIN; " if _opens_transaction(dbapi_connection, options) else "") + statement, parameters)
        row: Sequence[Any] | None = cursor.fetchone() if fetch else None
        if dispatching:
            for after in connection.dispatch.after_cursor_execute:
                after(connection, cursor, statement, parameters, None, False)
        return row
    except psycopg2.Error as exc:
        # SQLAlchemy's own handling of a failed statement (pinned version): wrapping, disconnect detection,
        # pool invalidation, handle_error listeners; it always raises.
        connection._handle_dbapi_exception(exc, statement, parameters, cursor, None)
    except BaseException as exc:
        if not isinstance(exc, Exception):
            # Killed mid-statement (a greenlet killed at shutdown, a gevent Timeout): psycopg2 has closed the
            # connection under SQLAlchemy, which must not send its rollback there (as its own execution does).
            connection.invalidate(exc)
        raise
    finally:
        if not cursor.closed:
            cursor.close()


class PreparedShapes:
    """One ``Prepared`` per *shape* of a statement whose clauses vary by request — a list's filters present,
    its sort, who reads — with every value a named bind parameter, so two requests of one shape are the same
    SQL whatever their values. Building and cache-keying such a statement per request cost about a
    millisecond; here it is built once per shape. Only the ``limit`` most recently used shapes are kept (each
    holds its statement tree and SQL, tens of kB): shapes beyond them, least recently used first, are built
    again when they come back."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._statements: OrderedDict[Hashable, Prepared] = OrderedDict()

    def get(self, shape: Hashable, build: Callable[[], Any]) -> Prepared:
        """The statement for ``shape``; ``build`` makes its SQLAlchemy statement the first time."""
        statement = self._statements.get(shape)
        if statement is None:
            statement = self._statements[shape] = Prepared(build())
            while len(self._statements) > self.limit:
                self._statements.popitem(last=False)
        else:
            self._statements.move_to_end(shape)
        return statement

    def __len__(self) -> int:
        return len(self._statements)


# --- BEGIN sent with a transaction's first statement ---------------------------------------------------

_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
# An execution option: this connection's statements run alone, each its own transaction (no BEGIN is sent).
ALONE = "gad_alone"
_HELD_KEY = "gad_held_cursor"  # in a pooled connection's info: a WITH HOLD cursor was declared on it


def _opens_transaction(dbapi_connection: Any, options: Any) -> bool:
    """Whether a statement run in a SQLAlchemy transaction with these execution options must open it on the server."""
    return bool(
        dbapi_connection.autocommit
        and dbapi_connection.info.transaction_status == _IDLE
        and not options.get(ALONE)
        and options.get("isolation_level") != "AUTOCOMMIT"
    )


def install_begin_with_first_statement(engine: Engine) -> None:
    """Open each transaction of ``engine`` with its first statement (``BEGIN; <statement>``, one round trip)
    and end it only if the server has one open.

    psycopg2 sends ``BEGIN`` on its own before a transaction's first statement — a round trip of its own on
    every request that touches the database — and ``COMMIT`` whenever it believes it opened one, even when
    the statement before already committed (the event log's append carries the request's COMMIT:
    ``gad.realtime.events._append``). Here psycopg2 runs in autocommit, so it sends neither: a statement
    SQLAlchemy runs in a transaction while the server has none open (libpq's ``transaction_status``, known
    locally) carries the ``BEGIN`` (so ``now()`` and the snapshot are that statement's, as before), and commit
    and rollback are sent only if the server has a transaction open. A connection SQLAlchemy runs in
    ``AUTOCOMMIT``, or with the ``ALONE`` option (``db_session.read_row``), gets no ``BEGIN``. Savepoints, errors and the statement counters
    see the same statements as before: only the text psycopg2 sends gains the prefix.

    Exceptions, each sending its ``BEGIN`` alone first as psycopg2 did: an ``executemany`` (the prefix would
    run once per row) and a server-side cursor (its statement is wrapped in ``DECLARE``); such cursors are
    declared ``WITH HOLD``, which psycopg2 requires on a connection in autocommit (within the transaction
    they behave as before; one still open at commit keeps its rows, so every reader consumes or closes it).
    While SQLAlchemy has psycopg2 out of autocommit (resetting an isolation level), psycopg2 runs and ends
    its own transactions as it did."""

    def autocommit(dbapi_connection: Any, *_: Any) -> None:
        if not dbapi_connection.autocommit:
            dbapi_connection.autocommit = True

    def begin_alone(cursor: Any, context: Any) -> None:
        if _opens_transaction(cursor.connection, context.execution_options):
            with cursor.connection.cursor() as plain:
                plain.execute("BEGIN")

    def execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        if cursor.name is not None:  # a server-side cursor: DECLARE wraps the statement
            begin_alone(cursor, context)
            cursor.withhold = True
            context.root_connection.connection.info[_HELD_KEY] = True  # closed at checkin if still open
            return False
        if not _opens_transaction(cursor.connection, context.execution_options):
            return False
        cursor.execute("BEGIN; " + statement, parameters)
        return True

    def execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
        return execute(cursor, statement, None, context)  # psycopg2 interpolates nothing without parameters

    def execute_many(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        begin_alone(cursor, context)
        return False

    def end(command: str) -> Callable[[Any], None]:
        def send(proxied: Any) -> None:
            dbapi_connection = getattr(proxied, "dbapi_connection", proxied)
            if not dbapi_connection.autocommit:
                getattr(dbapi_connection, command.lower())()  # psycopg2's own transaction: it ends it
            elif dbapi_connection.info.transaction_status != _IDLE:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute(command)

        return send

    def close_held(dbapi_connection: Any, record: Any) -> None:
        # A WITH HOLD cursor still open when its transaction committed outlives it (PostgreSQL keeps its rows in
        # the backend), and neither ROLLBACK nor the pool's reset closes it: the connection's next user must not
        # inherit it.
        if record is None or not record.info.pop(_HELD_KEY, False) or dbapi_connection is None or dbapi_connection.closed:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("CLOSE ALL")
        except psycopg2.Error:
            logger.warning("could not close held cursors on a pooled connection; it is discarded")
            record.invalidate()

    # First among the checkout listeners: the idle ping (install_idle_ping) must not open psycopg2's own BEGIN.
    event.listen(engine, "connect", autocommit)
    event.listen(engine, "checkout", autocommit, insert=True)
    event.listen(engine, "checkin", close_held)
    event.listen(engine, "do_execute", execute)
    event.listen(engine, "do_execute_no_params", execute_no_params)
    event.listen(engine, "do_executemany", execute_many)
    # SQLAlchemy calls these inside its error handling, so a failing COMMIT is wrapped (IntegrityError, ...) as before.
    setattr(engine.dialect, "do_commit", end("COMMIT"))  # noqa: B010 - an instance attribute, for this engine only
    setattr(engine.dialect, "do_rollback", end("ROLLBACK"))  # noqa: B010
