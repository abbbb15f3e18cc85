"""Login (JSON or OAuth2 password form), logout, and one's own browser sessions."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request

from gad.blueprints.http import json_response, no_content, no_input, no_query, parse_form, parse_json
from gad.db_session import commit_or_problem
from gad.errors import AppError, UnsupportedMediaType
from gad.extensions import limiter
from gad.net import client_address
from gad.openapi import documented
from gad.schemas.auth import LoginForm, LoginIn, SesionList, SesionOut, TokenOut
from gad.security import current_browser_session, current_user, end_session
from gad.services import auth, sesiones

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def login_rate_limit() -> str:
    """LOGIN_RATE_LIMIT, read per request so each app (and test) can set its own."""
    return str(current_app.config["LOGIN_RATE_LIMIT"])


# One counter per client address for both ways in (this endpoint and the /login form).
login_limit = limiter.shared_limit(login_rate_limit, scope="login")


_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


@bp.post("/login")
@login_limit
@documented(tags=("auth",), json=LoginIn, resp={"HTTP_200": TokenOut}, public=True)
def login() -> Response:
    # GRUPO_GAD's clients send the OAuth2 form; JSON is read as every JSON body is (parse_json: with or without its
    # Content-Type); anything else is a 415 naming both.
    if request.mimetype in _FORM_TYPES:
        form = parse_form(LoginForm)
        email, password = form.username, form.password
    elif request.is_json or not request.mimetype:
        body = parse_json(LoginIn)
        email, password = body.email, body.password
    else:
        raise UnsupportedMediaType(f"Send the OAuth2 form (application/x-www-form-urlencoded) or JSON, not {request.mimetype}.")
    try:
        _, token = auth.login(email, password, client_address())
    except AppError:
        # Failure counters and the security event must survive the error response's rollback.
        commit_or_problem()
        raise
    # A token in the body: never stored by a cache (RFC 6749 5.1), though the request itself carried no credentials.
    return json_response(TokenOut(access_token=token.access_token, expires_in=token.expires_in), headers={"Cache-Control": "no-store"})


@bp.post("/logout")
@documented(tags=("auth",), resp={"HTTP_204": None})
def logout() -> Response:
    no_input()
    usuario = current_user()
    if g.token_claims is not None:
        auth.revoke_token(usuario, g.token_claims)
    else:
        end_session()
    return no_content()


@bp.get("/sessions")
@documented(tags=("auth",), resp={"HTTP_200": SesionList})
def list_sessions() -> Response:
    no_query()
    usuario = current_user()
    current = current_browser_session()
    items = [
        SesionOut(
            id=s.id,
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            expires_at=s.expires_at,
            idle_expires_at=sesiones.idle_expires_at(s),
            client=s.client,
            user_agent=s.user_agent,
            actual=current is not None and current.id == s.id,
        )
        for s in sesiones.list_sessions(usuario)
    ]
    return json_response(SesionList(items=items))


@bp.delete("/sessions/<int:sesion_id>")
@documented(tags=("auth",), resp={"HTTP_204": None})
def end_one_session(sesion_id: int) -> Response:
    no_input()
    sesiones.end_session_by_id(current_user(), sesion_id)
    return no_content()


@bp.post("/logout-all")
@documented(tags=("auth",), resp={"HTTP_204": None})
def logout_everywhere() -> Response:
    """Every browser session and every token of the caller ends now (this one included)."""
    no_input()
    usuario = current_user()
    auth.log_out_everywhere(usuario, usuario.id)
    return no_content()
