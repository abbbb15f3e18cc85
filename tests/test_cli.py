"""The flask CLI: create-admin and seed-demo."""

from __future__ import annotations

import os

from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from tests.helpers import run_flask


def test_cli_create_admin_from_environment_then_login(database_url: str, client: FlaskClient) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url, "GAD_ADMIN_PASSWORD": "a-strong-admin-pass"}
    result = run_flask(env, "gad", "create-admin", "Chief@Gad.Test")
    assert result.returncode == 0, result.stderr
    login = client.post("/api/v1/auth/login", json={"email": "chief@gad.test", "password": "a-strong-admin-pass"})
    assert login.status_code == 200
    me = client.get("/api/v1/users/me", headers={"Authorization": "Bearer " + login.get_json()["access_token"]}).get_json()
    assert me["nivel"] == 3


def test_cli_create_admin_rejects_weak_password_and_duplicates(database_url: str) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url, "GAD_ADMIN_PASSWORD": "short"}
    weak = run_flask(env, "gad", "create-admin", "weak@gad.test")
    assert weak.returncode != 0 and "at least" in weak.stderr
    assert "Error: Password too weak. password: " in weak.stderr and "body." not in weak.stderr, weak.stderr
    env["GAD_ADMIN_PASSWORD"] = "a-strong-admin-pass"
    assert run_flask(env, "gad", "create-admin", "dup@gad.test").returncode == 0
    duplicate = run_flask(env, "gad", "create-admin", "DUP@gad.test")
    assert duplicate.returncode != 0 and "email" in duplicate.stderr


def test_cli_create_admin_refuses_what_the_api_refuses_in_one_line(database_url: str, app: Flask) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url, "GAD_ADMIN_PASSWORD": "a-strong-admin-pass"}
    for args, field in ((["bad email"], "email"), (["jefe@gad.local", "--dni", "1"], "dni"), (["jefe@gad.local", "--apellido", " "], "apellido")):
        result = run_flask(env, "gad", "create-admin", *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "Created" not in result.stdout, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: Invalid administrador: {field}: "), lines
    with app.app_context():
        assert db.session.execute(db.text("SELECT count(*) FROM usuarios")).scalar_one() == 0


def test_cli_seed_demo_is_idempotent(database_url: str, app: Flask) -> None:
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": database_url}
    assert run_flask(env, "gad", "seed-demo").returncode == 0

    def counts() -> tuple[int, ...]:
        with app.app_context():
            return tuple(db.session.execute(db.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in ("usuarios", "efectivos", "tareas", "eventos"))

    first = counts()
    assert run_flask(env, "gad", "seed-demo").returncode == 0
    assert counts() == first
    with app.app_context():
        estados = set(db.session.execute(db.text("SELECT DISTINCT estado FROM tareas")).scalars())
        niveles = set(db.session.execute(db.text("SELECT DISTINCT nivel FROM usuarios")).scalars())
    assert estados == {"programada", "en_curso", "pausada", "finalizada", "cancelada"}
    assert niveles == {1, 2, 3}
    with app.app_context():
        # A tarea begun or finished was due before now (one finished was shown due in three hours), and the demo
        # spots read as a phone's fixes do, not as a sum's binary noise (40.426899999999996).
        due_later = db.session.execute(
            db.text("SELECT codigo FROM tareas WHERE estado IN ('en_curso', 'pausada', 'finalizada') AND inicio_programado > now()")
        ).scalars()
        assert list(due_later) == []
        assert db.session.execute(db.text("SELECT count(*) FROM tareas WHERE estado = 'finalizada' AND fin_programado < now()")).scalar_one() == 1
        spots = db.session.execute(db.text("SELECT lat, lon FROM efectivos UNION ALL SELECT ubicacion_lat, ubicacion_lon FROM tareas")).all()
    assert spots and all(len(repr(value).partition(".")[2]) <= 6 for spot in spots for value in spot), spots
