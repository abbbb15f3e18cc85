"""Login (JSON or OAuth2 password form) and logout for API clients."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request

from gad.blueprints.http import json_response, parse_form, parse_json
from gad.db_session import commit_or_problem
from gad.errors import AppError
from gad.extensions import limiter
from gad.net import client_address
from gad.openapi import documented
from gad.schemas.auth import LoginForm, LoginIn, TokenOut
from gad.security import current_user, end_session
from gad.services import auth

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def login_rate_limit() -> str:
    """LOGIN_RATE_LIMIT, read per request so each app (and test) can set its own."""
    return str(current_app.config["LOGIN_RATE_LIMIT"])


# One counter per client address for both ways in (this endpoint and the /login form).
login_limit = limiter.shared_limit(login_rate_limit, scope="login")


@bp.post("/login")
@login_limit
@documented(tags=("auth",), json=LoginIn, resp={"HTTP_200": TokenOut, "HTTP_429": None}, public=True)
def login() -> Response:
    if request.is_json:
        body = parse_json(LoginIn)
        email, password = body.email, body.password
    else:
        form = parse_form(LoginForm)
        email, password = form.username, form.password
    try:
        _, token = auth.login(email, password, client_address())
    except AppError:
        # Failure counters and the security event must survive the error response's rollback.
        commit_or_problem()
        raise
    return json_response(TokenOut(access_token=token.access_token, expires_in=token.expires_in))


@bp.post("/logout")
@documented(tags=("auth",), resp={"HTTP_204": None})
def logout() -> Response:
    usuario = current_user()
    if g.token_claims is not None:
        auth.revoke_token(usuario, g.token_claims)
    else:
        end_session()
    return Response(status=204)
