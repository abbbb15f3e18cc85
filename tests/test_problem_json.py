"""The error contract: every 4xx/5xx, routing errors included, is application/problem+json."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.builders import Builders
from tests.conftest import make_app

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/no/such/route", {}, 404),
        ("delete", "/health", {}, 405),
        ("post", "/api/v1/auth/login", {"data": "{not json", "content_type": "application/json"}, 400),
        ("post", "/api/v1/auth/login", {"json": {"email": 5}}, 422),
        ("post", "/api/v1/auth/login", {"data": "x" * (2 * 1024 * 1024), "content_type": "application/json"}, 413),
    ],
)
def test_every_error_is_problem_json(client: FlaskClient, method: str, path: str, kwargs: dict, status: int) -> None:
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]


def test_validation_problem_lists_field_paths(client: FlaskClient) -> None:
    body = client.post("/api/v1/auth/login", json={"email": 5}).get_json()
    fields = {error["field"] for error in body["errors"]}
    assert {"body.email", "body.password"} <= fields


def test_method_not_allowed_names_allowed_methods(client: FlaskClient) -> None:
    response = client.delete("/health")
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_problem_json_without_traceback(database_url: str) -> None:
    app = make_app(database_url, PROPAGATE_EXCEPTIONS=False, TESTING=False)

    @app.get("/_boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/_boom")
    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_204_carries_neither_body_nor_content_type(client: FlaskClient, build: Builders) -> None:
    """No Content has nothing to label: a JSON client must not find an empty body announced as text/html."""
    admin = build.usuario(3)
    headers = build.headers(admin)
    answers = {
        "delete tarea": client.delete(f"/api/v1/tasks/{build.tarea(admin).id}", headers=headers),
        "deactivate efectivo": client.delete(f"/api/v1/efectivos/{build.efectivo().id}", headers=headers),
        "deactivate usuario": client.delete(f"/api/v1/users/{build.usuario(1).id}", headers=headers),
        "logout": client.post("/api/v1/auth/logout", headers=headers),
    }
    for what, answer in answers.items():
        assert answer.status_code == 204, (what, answer.get_json())
        assert answer.data == b"" and "Content-Type" not in answer.headers, (what, dict(answer.headers))
