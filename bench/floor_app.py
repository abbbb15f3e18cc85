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
``write_guarantees``: ``write`` plus the work GAD's guarantees add to each create, in GAD's own round trips and
with statements of the same shape, prepared once per connection: the caller re-read with the logout list (the
re-check every write makes), the tarea with its creation row in the history and its event id taken from the
counter, then the event row with its HMAC link (``gad.realtime.chain``), the counter, the NOTIFY and the COMMIT in
one round trip. No validation, hooks, ORM session, event schema or response schema: what the database and the
chain cost a create whatever code drives them.
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


# GAD's statements for a create, written out (gad.services.auth._PRINCIPAL, gad.services.tareas._insert_new,
# gad.realtime.events._APPEND_SQL): the floor runs the same work in PostgreSQL without GAD's Python around it.
_GUARANTEED_STATEMENTS = {
    "floor_principal": ("SELECT id, activo, token_version, nivel, EXISTS (SELECT FROM tokens_revocados WHERE jti = $2) FROM usuarios WHERE id = $1"),
    "floor_create": (
        "WITH nueva AS (INSERT INTO tareas (uuid, codigo, titulo, tipo, prioridad, estado, es_emergencia, creado_por_usuario_id, version, "
        "tiempo_pausado_s, created_at, updated_at) VALUES (gen_random_uuid(), $1, $2, $3, $4, 'programada', false, $5, 1, 0, now(), now()) "
        "ON CONFLICT (codigo) DO NOTHING RETURNING *), "
        "creacion AS (INSERT INTO historial_estados (tarea_id, estado_anterior, estado_nuevo, usuario_id, motivo, created_at) "
        "SELECT id, NULL, estado, $5, 'Tarea creada', created_at FROM nueva), "
        "ids AS (SELECT last_id + 1 AS last_id, last_hash FROM eventos_contador WHERE id = 1 AND EXISTS (SELECT FROM nueva) FOR UPDATE) "
        "SELECT json_build_object('id', id, 'codigo', codigo, 'titulo', titulo, 'tipo', tipo, 'prioridad', prioridad, 'estado', estado, "
        "'version', version, 'created_at', created_at)::text, (SELECT last_id FROM ids), (SELECT last_hash FROM ids), id FROM nueva"
    ),
    "floor_append": (
        "WITH appended AS (INSERT INTO eventos (id, event_type, topic, entity_type, entity_id, actor_id, request_id, payload, created_at, "
        "prev_hash, hash) SELECT id, event_type, topic, entity_type, entity_id, actor_id, request_id, payload, created_at, prev_hash, hash "
        "FROM jsonb_to_recordset(CAST($1 AS jsonb)) AS r(id bigint, event_type text, topic text, entity_type text, entity_id bigint, "
        "actor_id integer, request_id text, payload jsonb, created_at timestamptz, prev_hash text, hash text) RETURNING 1) "
        "UPDATE eventos_contador SET last_id = $2, last_hash = $3 WHERE id = 1 RETURNING pg_notify($4, $5)"
    ),
}


def _guaranteed_write_app() -> Flask:
    import hmac
    import json
    from datetime import UTC, datetime

    from sqlalchemy import text

    from config import load_config
    from gad.realtime import chain

    app = _hello_app()
    engine = _engine()
    key = str(load_config().AUDIT_KEY).encode()
    with engine.connect() as conn:
        creator = conn.execute(text("SELECT min(id) FROM usuarios")).scalar()

    def cursor_of(connection: Any) -> Any:
        if not connection.info.get("floor_prepared"):  # once per pooled connection, as gad.pg.Prepared
            connection.dbapi_connection.autocommit = True  # BEGIN goes with the first statement, as in GAD
            with connection.dbapi_connection.cursor() as cursor:
                for name, sql in _GUARANTEED_STATEMENTS.items():
                    cursor.execute(f"PREPARE {name} AS {sql}")
            connection.info["floor_prepared"] = True
        return connection.dbapi_connection.cursor()

    @app.post("/api/v1/tasks")
    def create_tarea() -> Response:
        body = request.get_json()
        connection = engine.raw_connection()
        try:
            with cursor_of(connection) as cursor:
                cursor.execute("BEGIN; EXECUTE floor_principal(%s, %s)", (creator, "floor-jti"))
                principal = cursor.fetchone()
                if principal is None or not principal[1] or principal[4]:
                    cursor.execute("ROLLBACK")
                    return Response(status=401)
                cursor.execute("EXECUTE floor_create(%s, %s, %s, %s, %s)", (body["codigo"], body["titulo"], body["tipo"], body.get("prioridad", 2), creator))
                row = cursor.fetchone()
                if row is None:
                    cursor.execute("ROLLBACK")
                    return Response(status=409)
                created, event_id, prev_hash, tarea_id = row
                now = datetime.now(UTC)
                fields = {
                    "id": event_id,
                    "event_type": "task_created",
                    "topic": "floor",
                    "entity_type": "tarea",
                    "entity_id": tarea_id,
                    "actor_id": creator,
                    "request_id": None,
                    "payload": json.loads(created),
                    "created_at": now,
                }
                digest = hmac.new(key, prev_hash.encode() + chain.canonical(**fields), "sha256").hexdigest()
                rows = json.dumps([fields | {"created_at": now.isoformat(), "prev_hash": prev_hash, "hash": digest}])
                # Another channel than GAD's: GAD's listener, idle in the same run, must not wake for these.
                cursor.execute("EXECUTE floor_append(%s, %s, %s, %s, %s); COMMIT", (rows, event_id, digest, "gad_floor", str(event_id)))
        except BaseException:
            connection.invalidate()  # its server transaction may still be open: the pool must not hand it out again
            raise
        finally:
            connection.close()
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
    factories = {
        "hello": _hello_app,
        "hello_with_stack": _stack_app,
        "one_query": _one_query_app,
        "write": _write_app,
        "write_guarantees": _guaranteed_write_app,
        "idle_websocket": _idle_websocket_app,
    }
    if name not in factories:
        raise AttributeError(name)
    app = factories[name]()
    globals()[name] = app
    return app
