"""Minimal WSGI apps on the user's fixed stack, for ``bench.stack_floor``: what no GAD code can beat.

``hello``: Flask answering a constant JSON document. ``hello_with_stack``: the same after importing the
libraries the stack is fixed to (SQLAlchemy ORM and its psycopg2 dialect, Flask-SQLAlchemy, pydantic,
flask-sock, Flask-Caching, prometheus-flask-exporter). ``one_query``: one pooled psycopg2 round trip whose
JSON PostgreSQL builds itself, and nothing else (no authentication, no middleware, no ping), for one tarea
and for a page of them. The pool is configured as GAD's (config.py's ``SQLALCHEMY_ENGINE_OPTIONS``: size,
no overflow, last returned first out, the same connection settings), so neither side pays for opening
sessions the other does not: with SQLAlchemy's defaults (10 + 10 overflow) the floor opened a PostgreSQL
session for one request in 27 at 16 clients.
``write``: one ``INSERT … RETURNING`` of a tarea (its JSON built by PostgreSQL) and its COMMIT through the
same pool, the JSON body parsed by Flask and nothing else (no validation, event, history or NOTIFY).
``idle_websocket``: flask-sock sockets that only wait for client frames (no hub, no queue, no auth).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, request


def _hello_app() -> Flask:
    app = Flask("floor")

    @app.get("/health")
    @app.get("/api/v1/users/me")  # the floor of bench.compare's "me" scenario too: bare Flask, same answer
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    return app


def _stack_app() -> Flask:
    import flask_caching  # noqa: F401 - imported only to pay their import cost
    import flask_sock  # noqa: F401 - imported only to pay their import cost
    import flask_sqlalchemy  # noqa: F401 - imported only to pay their import cost
    import prometheus_flask_exporter  # noqa: F401 - imported only to pay their import cost
    import pydantic  # noqa: F401 - imported only to pay their import cost
    import sqlalchemy.dialects.postgresql.psycopg2
    import sqlalchemy.orm  # noqa: F401 - imported only to pay their import cost

    return _hello_app()


def _engine() -> Any:
    from sqlalchemy import create_engine

    from config import load_config

    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://", 1)
    return create_engine(url, **load_config().SQLALCHEMY_ENGINE_OPTIONS | {"pool_pre_ping": False})


def _one_query_app() -> Flask:
    from sqlalchemy import text

    app = _hello_app()
    engine = _engine()
    query = text(
        "SELECT json_build_object('id', id, 'codigo', codigo, 'titulo', titulo, 'estado', estado, 'version', version)::text FROM tareas WHERE id = :id"
    )

    # A page: one statement, newest first, every column of each tarea as PostgreSQL's own JSON (about the volume
    # GAD's page carries, without its shaping, assignments or visibility rule).
    page = text(
        "SELECT json_build_object('items', coalesce(json_agg(pagina ORDER BY pagina.id DESC), '[]'))::text "
        "FROM (SELECT * FROM tareas ORDER BY id DESC LIMIT :limit) AS pagina"
    )

    @app.get("/api/v1/tasks/<int:tarea_id>")
    def get_tarea(tarea_id: int) -> Response:
        with engine.connect() as conn:
            body = conn.execute(query, {"id": tarea_id}).scalar()
        return Response(body, mimetype="application/json")

    @app.get("/api/v1/tasks")
    def list_tareas() -> Response:
        with engine.connect() as conn:
            body = conn.execute(page, {"limit": request.args.get("limit", 50, type=int)}).scalar()
        return Response(body, mimetype="application/json")

    return app


def _write_app() -> Flask:
    from sqlalchemy import text

    app = _hello_app()
    engine = _engine()
    with engine.connect() as conn:  # the creator every tarea names (GAD takes it from the token)
        creator = conn.execute(text("SELECT min(id) FROM usuarios")).scalar()
    insert = text(
        "INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, creado_por_usuario_id, created_at, updated_at) "
        "VALUES (gen_random_uuid(), :codigo, :titulo, :tipo, :prioridad, 'programada', :creator, now(), now()) "
        "RETURNING json_build_object('id', id, 'codigo', codigo, 'titulo', titulo, 'estado', estado, 'version', version)::text"
    )

    @app.post("/api/v1/tasks")
    def create_tarea() -> Response:
        body = request.get_json()
        with engine.begin() as conn:  # INSERT, then COMMIT
            created = conn.execute(
                insert, {"codigo": body["codigo"], "titulo": body["titulo"], "tipo": body["tipo"], "prioridad": body.get("prioridad", 2), "creator": creator}
            ).scalar()
        return Response(created, status=201, mimetype="application/json")

    return app


def _idle_websocket_app() -> Flask:
    from flask_sock import Sock

    app = _hello_app()
    sock = Sock(app)

    @sock.route("/ws/connect")
    def connect(ws: Any) -> None:
        ws.send('{"event_type": "connection_ack", "data": {}}')
        while ws.connected:
            ws.receive(timeout=25)  # an idle socket: wake only for a client frame or a ping interval

    return app


def __getattr__(name: str) -> Flask:
    # Built on first access so each gunicorn worker imports only the variant it serves.
    factories = {"hello": _hello_app, "hello_with_stack": _stack_app, "one_query": _one_query_app, "write": _write_app, "idle_websocket": _idle_websocket_app}
    if name not in factories:
        raise AttributeError(name)
    app = factories[name]()
    globals()[name] = app
    return app
