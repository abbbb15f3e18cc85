"""The OpenAPI document generated from the schemas, and the docs page that renders it."""

from __future__ import annotations

from flask.testing import FlaskClient


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
