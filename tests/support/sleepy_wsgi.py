"""The real app plus routes that wait in PostgreSQL: proves gunicorn's gevent workers stay cooperative, and holds
requests in flight for as long as a test needs."""

from flask import jsonify, request
from sqlalchemy import text

from gad import create_app
from gad.extensions import db

app = create_app()


@app.get("/_test/pg-sleep")
def pg_sleep():
    db.session.execute(text("SELECT pg_sleep(1)"))
    return jsonify(slept=True)


@app.get("/_test/held")
def held():
    # Waits while the test holds the advisory lock ``?lock=`` exclusively: in flight for as long as the test needs.
    db.session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": int(request.args["lock"])})
    return jsonify(held=True)
