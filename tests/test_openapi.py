"""The OpenAPI document generated from the schemas, and the docs page that renders it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from gad import openapi
from tests.conftest import ROOT


def test_openapi_document_is_generated_from_schemas(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/tasks" in spec["paths"] and "post" in spec["paths"]["/api/v1/tasks"]
    schemas = spec["components"]["schemas"]
    assert any(name.startswith("TareaIn") for name in schemas)


def test_docs_page_uses_only_local_assets(client: FlaskClient) -> None:
    page = client.get("/api/v1/docs/").get_data(as_text=True)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page
    assert "http://" not in page and "https://" not in page
    with client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200


def test_shipped_openapi_document_matches_the_code(app: Flask) -> None:
    shipped = openapi.SHIPPED_DOCUMENT.read_text(encoding="utf-8")
    assert openapi.render(app) == shipped, "gad/openapi.json no longer matches the code: run `flask --app wsgi gad openapi` and commit it"


def test_openapi_check_command_agrees(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["gad", "openapi", "--check"])
    assert result.exit_code == 0 and "matches the code" in result.output


def test_a_worker_serves_the_shipped_file_without_building_any_schema(database_url: str) -> None:
    # A fresh process, as a gunicorn worker is: the first request must not import spectree or build the document.
    probe = (
        "import sys; from tests.conftest import make_app; from gad import openapi;"
        f"client = make_app({database_url!r}).test_client();"
        "first = client.get('/api/v1/openapi.json');"
        "again = client.get('/api/v1/openapi.json', headers={'If-None-Match': first.headers['ETag'].strip(chr(34))});"
        "assert first.status_code == 200 and first.mimetype == 'application/json', first.status;"
        "assert first.get_data() == openapi.SHIPPED_DOCUMENT.read_bytes();"
        "assert again.status_code == 304, again.status;"
        "assert 'spectree' not in sys.modules, 'spectree was imported to serve the document'"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "gad/openapi.json" not in (ROOT / ".dockerignore").read_text() and "COPY --chown=gad:gad gad ./gad" in (ROOT / "Dockerfile").read_text()


def test_every_document_made_in_one_process_is_whole(app_with: Callable[..., Flask]) -> None:
    """spectree takes nested definitions out of the schemas it keeps as it writes a document: a second app's
    document in the same process (the CLI after a test, two tests) lost them and referred to schemas it lacked."""
    first, second = openapi.render(app_with()), openapi.render(app_with())
    assert first == second
    document = json.loads(second)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', second))
    assert refs and refs <= set(document["components"]["schemas"])
