"""One transaction per request: services flush, this module commits at the edge and runs after-commit hooks."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from flask import Flask, Response
from sqlalchemy import Select, event, inspect, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import instance_state

from gad.errors import Conflict, ServiceUnavailable, ValidationProblem, problem_response
from gad.extensions import WAITING_FOR_SESSION, db
from gad.pg import ALONE, Prepared
from gad.reqctx import current_g

logger = logging.getLogger(__name__)
T = TypeVar("T")

_AFTER_COMMIT_KEY = "gad_after_commit"


def add_when_opened(instance: T) -> T:
    """Put an instance built as a query would have loaded it (persistent key, clean values) into the request's
    session: at once if the session is open — returning the copy it already holds, if any — else as soon as
    the request opens it (``extensions.RequestSession``). Either way every query of the request sees it in the
    identity map, as if it had been loaded; a request that never opens the session never pays for one."""
    if db.session.registry.has():
        session = db.session()
        key = instance_state(instance).key
        already = session.identity_map.get(key) if key is not None else None
        if already is not None:
            return cast(T, already)
        session.add(instance)
    else:
        vars(current_g()).setdefault(WAITING_FOR_SESSION, []).append(instance)  # g.setdefault without its Python call
    return instance


def loaded(cls: type[T], values: dict[str, Any], *, attach: bool = True) -> T:
    """A ``cls`` holding ``values`` (every column, keyed by attribute) as a query would have loaded it, in the
    request's session (``add_when_opened``), without SQL. Built the way the ORM builds a loaded row (values
    placed in the instance, then given the identity key a load gives it), not through ``cls(**values)``, whose
    attribute events per column cost more than the statement that read or wrote the row. ``attach=False``
    leaves it out of the session, for a caller that only reads it: joining the session (its cascade walk) costs
    a sixth of a create's statement."""
    mapper, key_names = _loading(cast(Any, cls))
    instance = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    # instance_state, not inspect(): the same state without inspect's dispatch on the argument's type.
    instance_state(instance).key = mapper.identity_key_from_primary_key(tuple(map(values.__getitem__, key_names)))
    return cast(T, add_when_opened(instance) if attach else instance)


def refuse_changes_when_detached(cls: type[Any]) -> None:
    """Make setting a column of a detached ``cls`` raise instead of being lost: no session would ever write it. A
    ``loaded(..., attach=False)`` instance is detached, and so is any whose session has ended."""

    def refuse(target: Any, _value: Any, _old: Any, initiator: Any) -> None:
        if instance_state(target).detached:
            raise RuntimeError(f"{cls.__name__} {instance_state(target).key} is in no session: the change to {initiator.key} would be lost")

    for attribute in inspect(cls).column_attrs:
        event.listen(attribute.class_attribute, "set", refuse)


@functools.cache
def _loading(cls: Any) -> tuple[Mapper[Any], tuple[str, ...]]:
    """A mapped class's mapper and primary-key attribute names, looked up once (every cached caller builds one)."""
    mapper: Mapper[Any] = inspect(cls, raiseerr=True)
    return mapper, tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key)


def read_row(statement: Prepared, params: dict[str, Any]) -> Sequence[Any] | None:
    """The first row of one read-only statement, inside the request's transaction if it has opened one.

    A request that has not (its caller came from the token cache, and it only reads) runs the statement
    alone on a pooled connection in autocommit: one statement is its own snapshot either way, and it is
    spared the BEGIN and COMMIT round trips and the ORM session it would otherwise build for nothing.
    Anything the request does afterwards opens its transaction as usual.

    The statement runs alone through ``pg.ALONE``, an execution option (``pg.install_begin_with_first_statement``
    then sends it without BEGIN, and SQLAlchemy's rollback at close finds no transaction to end): SQLAlchemy's
    ``isolation_level`` option did the same through its isolation-level bookkeeping on checkout and again on
    checkin, which cost a fifth of a GET of one tarea's CPU."""
    if db.session.registry.has():
        return statement.first(db.session.connection(), params)
    with db.engine.connect() as connection:
        return statement.first(connection.execution_options(**{ALONE: True}), params)


_Statement = TypeVar("_Statement", bound=Select[Any])


def for_update(statement: _Statement, **lock: Any) -> _Statement:
    """``statement`` locking its rows (``FOR UPDATE``, with ``lock``'s options: ``of``, ``skip_locked``, ``key_share``) and reading
    them as locked. Every write decides on rows it locked; an object the session already held (the caller's own
    usuario, put there to authenticate them; a turno read before its efectivos were locked) used to come back as
    it was read before the lock, so two writers both passed a version check and one change was lost. The one way
    GAD locks rows, so that no lock can be taken without it (tests/test_layers.py)."""
    return statement.with_for_update(**lock).execution_options(populate_existing=True)


_NO_IDLE_TIMEOUT = text("SET LOCAL idle_in_transaction_session_timeout = 0")


def allow_idle_transaction() -> None:
    """Lift ``DB_IDLE_IN_TRANSACTION_TIMEOUT_MS`` for the rest of the request session's transaction: for a reader
    that waits on someone else between its statements (a streamed export on the client reading it, the import on
    its source) and holds no lock a writer needs."""
    db.session.execute(_NO_IDLE_TIMEOUT)


def as_uuid(value: Any) -> Any:
    """A uuid column's value as SQLAlchemy reads it (``uuid.UUID``): a ``gad.pg.Prepared`` statement's rows come
    from psycopg2 as they are, and psycopg2 reads a uuid as text."""
    return uuid.UUID(value) if isinstance(value, str) else value


def on_commit(callback: Callable[[], None], session: Session | None = None) -> None:
    """Run ``callback`` only once the current transaction has committed (never for a rolled-back change)."""
    target = session if session is not None else db.session()
    target.info.setdefault(_AFTER_COMMIT_KEY, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop(_AFTER_COMMIT_KEY, [])
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a failing side effect must not turn a committed write into an error
            logger.exception("after-commit hook failed")


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT_KEY, None)


_USED_CONNECTION_KEY = "gad_used_connection"


@event.listens_for(Session, "after_begin")
def _mark_connection_used(session: Session, *_: object) -> None:
    # Kept for the session's life (one request): any later commit of this session is then never skipped.
    session.info[_USED_CONNECTION_KEY] = True


def end_reads() -> None:
    """End the request session's transaction, which has only read, before a wait that needs no database: a password
    hash, queued behind others' in a login storm for seconds. Held open through it, the transaction kept a pooled
    connection from every other request, and PostgreSQL ended it as idle in transaction
    (``DB_IDLE_IN_TRANSACTION_TIMEOUT_MS``): a 503 for a healthy login. What was read stays loaded (expire_on_commit
    is off); the next statement opens a new transaction, so a decision taken after the wait re-reads what it rests on."""
    session = db.session()
    if session.new or session.dirty or session.deleted or set(session.info) - {_USED_CONNECTION_KEY}:
        raise RuntimeError("end_reads() after a change: the change would be committed before the request decided on it")
    session.commit()


def _has_work(session: Session) -> bool:
    """Whether committing could do anything: a connection was used, changes wait for a flush, or events
    or after-commit hooks are queued (each leaves a key in ``session.info``). A read answered from the
    token cache puts its usuario in the session without touching the database: its commit would run the
    flush and commit machinery to send nothing."""
    return bool(session.info or session.new or session.dirty or session.deleted)


def commit_or_problem() -> Response | None:
    """Commit the request's transaction; a failure becomes a problem response instead of a 500."""
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        logger.info("commit rejected by a constraint: %s", exc.orig)
        error = Conflict("The change conflicts with existing data.", constraint=_constraint_name(exc))
        return problem_response(error.status, error.title, error.detail, code=error.code, extra=error.extra)
    except (OperationalError, PoolTimeoutError) as exc:
        db.session.rollback()
        logger.warning("commit failed, database unavailable: %s", exc)
        unavailable = ServiceUnavailable("The database is unavailable; retry shortly.")
        return problem_response(unavailable.status, unavailable.title, unavailable.detail, code=unavailable.code, headers={"Retry-After": "2"})
    return None


def _constraint_name(exc: DBAPIError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


def _commit_after_request(response: Response) -> Response:
    if response.status_code >= 400:
        db.session.rollback()
        return response
    if db.session.registry.has() and db.session().in_transaction() and _has_work(db.session()):
        problem = commit_or_problem()
        if problem is not None:
            return problem
    return response


def _handle_database_unavailable(exc: Exception) -> Response:
    db.session.rollback()
    logger.warning("database unavailable: %s", exc)
    error = ServiceUnavailable("The database is unavailable; retry shortly.")
    return problem_response(error.status, error.title, error.detail, code=error.code, headers={"Retry-After": "2"})


def _handle_integrity_error(exc: IntegrityError) -> Response:
    db.session.rollback()
    error = Conflict("The change conflicts with existing data.", constraint=_constraint_name(exc))
    return problem_response(error.status, error.title, error.detail, code=error.code, extra=error.extra)


def _handle_data_error(exc: DataError) -> Response:
    # Values the schema let through but PostgreSQL cannot store (an id beyond bigint, say): client error.
    db.session.rollback()
    error = ValidationProblem("A value is out of range for the database.")
    return problem_response(error.status, error.title, error.detail, code=error.code)


def init_app(app: Flask) -> None:
    app.register_error_handler(DataError, _handle_data_error)
    app.after_request(_commit_after_request)
    app.register_error_handler(OperationalError, _handle_database_unavailable)
    app.register_error_handler(PoolTimeoutError, _handle_database_unavailable)
    app.register_error_handler(IntegrityError, _handle_integrity_error)
