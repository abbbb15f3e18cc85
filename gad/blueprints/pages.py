"""Browser pages: the login form, logout, and the landing page (server-rendered, Spanish UI)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from gad.db_session import commit_or_problem
from gad.errors import AppError, Unauthorized
from gad.extensions import limiter
from gad.net import client_address
from gad.security import check_csrf, end_session, is_local_path, resolve_user, start_session
from gad.services import auth

bp = Blueprint("pages", __name__)


def _login_limit() -> str:
    from flask import current_app

    return str(current_app.config["LOGIN_RATE_LIMIT"])


@bp.get("/login")
def login_form() -> str:
    return render_template("login.html", next=request.args.get("next", ""), error=None, email="")


@bp.post("/login")
@limiter.limit(_login_limit)
def login_submit() -> WerkzeugResponse | tuple[str, int]:
    check_csrf(request.form.get("csrf_token"))
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    target = request.form.get("next", "")
    try:
        usuario, _ = auth.login(email, password, client_address())
    except AppError as exc:
        commit_or_problem()
        message = "Cuenta bloqueada temporalmente. Inténtelo más tarde." if exc.status == 423 else "Correo o contraseña incorrectos."
        return render_template("login.html", next=target, error=message, email=email), exc.status
    start_session(usuario)
    # ?next= is followed only to local paths, so the login page cannot be used as an open redirect.
    return redirect(target if is_local_path(target) else url_for("pages.index"))


@bp.post("/logout")
def logout() -> WerkzeugResponse:
    check_csrf(request.form.get("csrf_token"))
    end_session()
    return redirect(url_for("pages.login_form"))


@bp.get("/")
def index() -> WerkzeugResponse | str:
    try:
        usuario, _, _ = resolve_user()
    except Unauthorized:
        return redirect(url_for("pages.login_form", next="/"))
    return render_template("index.html", usuario=usuario)
