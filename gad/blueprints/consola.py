"""Browser pages added for operators and field staff: the filtered, paged tarea list and /mi (the phone page).

Shells rendered by the server; data and actions go through the JSON API from ES modules under gad/static/js.
/mi is installable: a web app manifest (static) and a service worker served from /mi/sw.js, whose scope is the page.
"""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, request, send_from_directory, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response as WerkzeugResponse

from gad.blueprints.pages import _login_redirect, _render, too_many_attempts
from gad.blueprints.pages import bp as pages_bp
from gad.blueprints.reportes import pages as informes_pages
from gad.blueprints.turnos import pages as planificacion_pages
from gad.db_session import commit_or_problem
from gad.errors import AppError, CurrentPasswordRejected, pydantic_errors
from gad.models import utcnow
from gad.net import client_address
from gad.policy import is_supervisor
from gad.schemas.usuarios import UsuarioPatch
from gad.security import check_csrf, current_browser_session, is_local_path, page_user, start_session
from gad.services import usuarios
from gad.vocab import EstadoTarea, TipoTarea

bp = Blueprint("consola", __name__)
# Pages a usuario with an administrador-chosen password may still open (everything else sends them to change it).
_OPEN_WHILE_CHANGING = frozenset({"pages.login_form", "pages.login_submit", "pages.logout", "consola.cambiar_clave", "consola.service_worker"})


def _password_change_first() -> WerkzeugResponse | None:
    """Browser pages only: someone whose password an administrador chose changes it before anything else."""
    if request.endpoint in _OPEN_WHILE_CHANGING:
        return None
    usuario = page_user()
    if usuario is not None and usuario.debe_cambiar_clave:
        return redirect(url_for("consola.cambiar_clave", next=request.full_path.rstrip("?")))
    return None


# On the blueprints that serve pages, not on the app: an app-wide hook ran on every API request to find it had
# nothing to do there (docs/BENCHMARKS.md, issue 18's fifth pass). A new page blueprint is added here.
for page_blueprint in (bp, pages_bp, informes_pages, planificacion_pages):
    page_blueprint.before_request(_password_change_first)


@bp.route("/cambiar-clave", methods=["GET", "POST"])
def cambiar_clave() -> WerkzeugResponse | str | tuple[str, int, dict[str, str]]:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    target = request.values.get("next", "")
    errors: dict[str, str] = {}
    status, headers = 422, {}
    if request.method == "POST":
        check_csrf(request.form.get("csrf_token"))
        nueva = request.form.get("password", "")
        if nueva != request.form.get("password2", ""):
            errors["password2"] = "Las dos contraseñas no coinciden."
        else:
            try:
                # Through the API's own schema: a password with a NUL was taken here, and then refused at every login.
                form = {"password": nueva, "current_password": request.form.get("current_password", "")}
                changes = UsuarioPatch.model_validate(form).model_dump(exclude_unset=True)
                usuarios.update_usuario(usuario, usuario.id, changes, None, client_address=client_address())
            except ValidationError as exc:
                for field_error in pydantic_errors(exc):
                    errors[field_error["field"].removeprefix("body.")] = field_error["mensaje"]
            except AppError as exc:
                if isinstance(exc, CurrentPasswordRejected):
                    commit_or_problem()  # the failed re-authentication is a security event, as through the API
                for field_error in exc.errors or []:
                    errors[field_error["field"].removeprefix("body.")] = field_error.get("mensaje") or "Contraseña no válida."
                if exc.status == 429:  # the current password was guessed at too often: as the login form says it
                    status, headers = 429, exc.headers
                    errors["general"] = too_many_attempts(exc)
                if not errors:
                    errors["general"] = "No se pudo cambiar la contraseña."
            else:
                if commit_or_problem() is None:
                    # The change ended every session of this usuario, this one included: start a fresh one.
                    start_session(usuario)
                    return redirect(target if is_local_path(target) else url_for("pages.index"))
                errors["general"] = "No se pudo guardar; inténtelo de nuevo."
        return _render("cambiar_clave.html", usuario, errors=errors, next=target), status, headers
    return _render("cambiar_clave.html", usuario, errors=errors, next=target)


@bp.get("/tareas")
def tareas_lista() -> WerkzeugResponse | str:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    return _render(
        "tareas.html",
        usuario,
        estados=[e.value for e in EstadoTarea],
        tipos=[t.value for t in TipoTarea],
        filtro_estado=request.args.get("estado", ""),
    )


@bp.get("/mi")
def mi_servicio() -> WerkzeugResponse | str:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    sesion = current_browser_session()
    # Opened later from the service worker's copy, without coverage, the page must know whether the session it was
    # drawn in still stands (a shared phone: the next officer must not see these data, nor take an SOS queued there for
    # one on its way): how long it lives without use, and how long it has left in all (js/api.js counts from here).
    limites = {}
    if sesion is not None:  # not a page shown to a bearer token, whose lifetime is the token's
        limites = {
            "sesion_inactiva_s": current_app.config["SESSION_IDLE_MINUTES"] * 60,
            "sesion_resta_s": max(0, int((sesion.expires_at - utcnow()).total_seconds())),
        }
    return _render("mi.html", usuario, operador=is_supervisor(usuario), **limites)


@bp.get("/mi/sw.js")
def service_worker() -> WerkzeugResponse:
    # Served under /mi/ so its default scope is the phone page; never cached by HTTP so an update reaches phones.
    response = send_from_directory(current_app.static_folder or "static", "mi/sw.js", mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    # The page is /mi (no trailing slash), one level above the worker's default scope /mi/.
    response.headers["Service-Worker-Allowed"] = "/mi"
    return response
