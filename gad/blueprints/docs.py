"""The OpenAPI document and a Swagger UI page served from vendored assets (no CDN)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template

from gad.openapi import document

bp = Blueprint("docs", __name__, url_prefix="/api/v1")


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document(current_app._get_current_object()))  # type: ignore[attr-defined]


@bp.get("/docs")
@bp.get("/docs/")
def docs_page() -> str:
    return render_template("docs.html")
