"""The real app plus one route that sleeps in PostgreSQL: proves gunicorn's gevent workers stay cooperative."""

from flask import jsonify
from sqlalchemy import text

from gad import create_app
from gad.extensions import db

app = create_app()


@app.get("/_test/pg-sleep")
def pg_sleep():
    db.session.execute(text("SELECT pg_sleep(1)"))
    return jsonify(slept=True)
