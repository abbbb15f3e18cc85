"""Audit export: a range of the event log as JSON Lines, checked offline with the chain's own hashing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from gad.extensions import db
from gad.models import Evento
from gad.services.auditoria_export import verify_lines
from tests.builders import Builders
from tests.conftest import ROOT


def _key(app: Flask) -> bytes:
    """The chain is an HMAC under the service's AUDIT_KEY: checking an export needs the same key."""
    return str(app.config["AUDIT_KEY"]).encode()


def _make_events(client: FlaskClient, headers: dict[str, str], n: int) -> None:
    for i in range(n):
        body = {"codigo": f"AUD-{i:03d}", "titulo": "Tarea auditada ñandú", "tipo": "patrullaje"}
        assert client.post("/api/v1/tasks", json=body, headers=headers).status_code == 201


def _export(client: FlaskClient, headers: dict[str, str], query: str = "") -> list[str]:
    response = client.get(f"/api/v1/auditoria/export{query}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    return response.get_data(as_text=True).splitlines(keepends=True)


def test_full_export_verifies_and_names_what_was_tampered(app: Flask, client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    headers = build.headers(admin)
    _make_events(client, headers, 5)
    lines = _export(client, headers)
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])
    assert header["formato"] == "gad-auditoria" and trailer == trailer | {"fin": True, "eventos": 5}
    assert verify_lines(lines, _key(app)).ok and verify_lines(lines, _key(app)).checked == 5

    events = [json.loads(line) for line in lines[1:-1]]
    edited = events[2] | {"payload": events[2]["payload"] | {"titulo": "otra cosa"}}
    tampered = [lines[0], *(json.dumps(e) + "\n" for e in [*events[:2], edited, *events[3:]]), lines[-1]]
    result = verify_lines(tampered, _key(app))
    assert not result.ok and result.first_bad_id == events[2]["id"] and "content" in (result.problem or "")

    missing = [lines[0], *lines[1:3], *lines[4:]]
    gap = verify_lines(missing, _key(app))
    assert not gap.ok and gap.first_bad_id == events[2]["id"]
    assert "truncated" in (verify_lines(lines[:-1], _key(app)).problem or "")


def test_export_of_a_middle_range_links_to_the_event_before_it(app: Flask, client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    headers = build.headers(admin)
    _make_events(client, headers, 6)
    with app.app_context():
        rows = db.session.query(Evento).order_by(Evento.id).all()
        # Give the last three a distinct time window by reading their stored times.
        cut = rows[3].created_at
        previous_hash = rows[2].hash
    query = "?desde=" + cut.isoformat().replace("+", "%2B")
    lines = _export(client, headers, query)
    header = json.loads(lines[0])
    assert header["desde_id"] == rows[3].id and header["prev_hash"] == previous_hash
    result = verify_lines(lines, _key(app))
    assert result.ok and result.checked == len(rows) - 3


def test_documented_commands_export_and_check_a_file(app: Flask, client: FlaskClient, build: Builders, tmp_path: Path) -> None:
    admin = build.usuario(3)
    _make_events(client, build.headers(admin), 3)
    target = tmp_path / "auditoria.jsonl"
    runner = app.test_cli_runner()
    exported = runner.invoke(args=["gad", "audit", "export", "-o", str(target)])
    assert exported.exit_code == 0, exported.output
    checked = runner.invoke(args=["gad", "audit", "verify-export", str(target)])
    assert checked.exit_code == 0 and "3 events verified" in checked.output
    # Offline: no app, no database — the module run on its own.
    module = [sys.executable, "-m", "gad.commands.auditoria_export", str(target)]
    offline = subprocess.run(module, cwd=ROOT, capture_output=True, text=True, check=False, env=os.environ | {"AUDIT_KEY": app.config["AUDIT_KEY"]})
    assert offline.returncode == 0, offline.stderr
    wrong_key = subprocess.run(module, cwd=ROOT, capture_output=True, text=True, check=False, env=os.environ | {"AUDIT_KEY": "not-the-key-" + "x" * 40})
    assert wrong_key.returncode == 1 and "does not match its hash" in wrong_key.stderr
    lines: list[Any] = target.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace("ñandú", "nandu")
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    broken = runner.invoke(args=["gad", "audit", "verify-export", str(target)])
    assert broken.exit_code == 1 and "does not verify" in broken.output


def test_offline_check_needs_the_audit_key_as_the_readme_says(tmp_path: Path) -> None:
    """No database and no app, but the key: without AUDIT_KEY the module says so and exits 1."""
    target = tmp_path / "auditoria.jsonl"
    target.write_text("", encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name not in {"AUDIT_KEY", "DATABASE_URL", "GAD_ENV", "SECRET_KEY"}}
    result = subprocess.run(
        [sys.executable, "-m", "gad.commands.auditoria_export", str(target)], cwd=ROOT, capture_output=True, text=True, check=False, env=env
    )
    # One line, and no runpy warning before it (the package used to import the module it runs).
    assert result.returncode == 1 and result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith("Error: Set AUDIT_KEY"), result.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "AUDIT_KEY='the key the service runs with' python -m gad.commands.auditoria_export auditoria.jsonl" in readme
    assert "no database or app configuration" not in readme


def test_audit_export_is_for_administradores(app: Flask, client: FlaskClient, build: Builders) -> None:
    for nivel in (1, 2):
        response = client.get("/api/v1/auditoria/export", headers=build.headers(build.usuario(nivel)))
        assert response.status_code == 403 and response.mimetype == "application/problem+json"


def test_an_export_longer_than_one_batch_streams_to_its_end(app: Flask, client: FlaskClient, build: Builders) -> None:
    """Past 2,000 events (one batch) the export broke mid-stream: the API's body ended without its trailer, and the
    CLI exited 1 with a traceback and a truncated file."""
    from gad.realtime import events
    from gad.schemas.events import ImportBatch
    from gad.services.auditoria_export import BATCH

    admin = build.usuario(3)
    with app.app_context():
        for i in range(1, BATCH + 151):
            batch = ImportBatch(sistema="grupo_gad", entidad="tarea", rows=1, old_ids=[i, i], new_ids=[i, i])
            events.record(db.session(), batch, topic="sistema", entity_type="importacion", entity_id=None, actor_id=None)
        db.session.commit()
    lines = _export(client, build.headers(admin))
    assert json.loads(lines[-1]) | {"fin": True, "eventos": BATCH + 150} == json.loads(lines[-1])
    assert verify_lines(lines, _key(app)).ok
