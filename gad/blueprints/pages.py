"""Browser pages (Spanish UI): login/logout and the command-centre dashboard.

Pages are server-rendered shells; data comes from the JSON API and the live stream through small
ES modules under gad/static/js (rendered with textContent, never innerHTML). The create form posts
here so validation errors are rendered next to their fields by the server.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, after_this_request, current_app, redirect, render_template, request, session, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response as WerkzeugResponse

from gad.blueprints.auth import login_limit
from gad.blueprints.http import repeated_form_fields
from gad.db_session import commit_or_problem
from gad.errors import AppError, pydantic_errors
from gad.extensions import db
from gad.models import Usuario
from gad.net import client_address
from gad.policy import TRANSICIONES_EFECTIVO, is_admin, is_supervisor
from gad.realtime import events
from gad.schemas.auth import LoginIn
from gad.schemas.tareas import TareaIn
from gad.security import check_csrf, csrf_matches, current_browser_session, end_session, is_local_path, page_user, start_session
from gad.services import auth, efectivos, tareas
from gad.text import canonical_email
from gad.vocab import TRANSICIONES, EstadoTarea, TipoTarea

bp = Blueprint("pages", __name__)

ESTADO_LABELS = {"programada": "Programadas", "en_curso": "En curso", "pausada": "Pausadas", "finalizada": "Finalizadas", "cancelada": "Canceladas"}


def _login_redirect() -> WerkzeugResponse:
    # The whole address, filters included: after logging in the usuario lands on the list they asked for.
    return redirect(url_for("pages.login_form", next=request.full_path if request.query_string else request.path))


def _transitions_for(usuario: Usuario) -> dict[str, list[str]]:
    """The state machine as this user may drive it (the API enforces the same rule)."""
    out = {}
    for estado, targets in TRANSICIONES.items():
        allowed = targets if is_supervisor(usuario) else targets & TRANSICIONES_EFECTIVO
        out[estado.value] = sorted(t.value for t in allowed)
    return out


def _render(template: str, usuario: Usuario, **context: Any) -> str:
    return render_template(
        template,
        usuario=usuario,
        # Read before the page's scripts read anything: their live socket resumes from here, so what commits between
        # those reads and its handshake is replayed, not lost (live.js).
        last_event_id=events.head(db.session()),
        es_supervisor=is_supervisor(usuario),
        es_admin=is_admin(usuario),
        transiciones=_transitions_for(usuario),
        estado_labels=ESTADO_LABELS,
        **context,
    )


# Set in the (signed) session cookie by a logout, or by a login that replaced another usuario's session, and read
# once by the next page drawn (the login page, or where the login lands), whose js/salida.js then forgets what the
# browser kept for that usuario: the server's word on whom it logged out, where the page's own guess before the
# logout could not be made (no answer from the server in time), or was never asked (a login over an open session).
_LOGGED_OUT_KEY = "salio"
# The same for a usuario whose session a login replaced: they did not choose to leave, so their outbox stays (it is
# sent when they log in again), as when their session ends anywhere else.
_REPLACED_KEY = "relevado"


@bp.app_context_processor
def _logged_out() -> dict[str, Any]:
    # A function base.html calls: the flags are taken only by a page that shows them (not by /docs, which has its own
    # layout, nor by anything rendered without a page).
    return {"olvido": _take_logged_out}


def _take_logged_out() -> tuple[int | None, int | None]:
    """(salio, relevado): the usuario a logout ended and the one a login replaced, each told once."""
    if _LOGGED_OUT_KEY not in session and _REPLACED_KEY not in session:
        return None, None
    after_this_request(_not_kept_offline)
    return session.pop(_LOGGED_OUT_KEY, None), session.pop(_REPLACED_KEY, None)


def _not_kept_offline(response: WerkzeugResponse) -> WerkzeugResponse:
    # The page that forgets is not the one /mi's service worker keeps for offline use: opened again without
    # coverage it would forget again, the next officer's own copy of their tareas included.
    response.headers["X-GAD-Olvida"] = "1"
    return response


@bp.get("/login")
def login_form() -> str:
    return render_template("login.html", next=request.args.get("next", ""), error=None, email="")


@bp.post("/login")
@login_limit
def login_submit() -> WerkzeugResponse | tuple[str, int, dict[str, str]]:
    email = request.form.get("email", "").strip()
    target = request.form.get("next", "")
    if repeated_form_fields():
        # Not a form this page sent (each field once): the first of two e-mails is not for the server to pick, as on the API.
        return render_template("login.html", next="", error="El formulario llegó con campos repetidos: vuelva a intentarlo.", email=""), 422, {}
    if not csrf_matches(request.form.get("csrf_token")):
        # A login form left open in a second tab after logging in (or out) in the first: its token is the old session's.
        # The same person is simply let through; someone else typing into it must not land in the open session.
        signed_in = page_user()
        if signed_in is not None and canonical_email(email) == signed_in.email.lower():
            return redirect(target if is_local_path(target) else url_for("pages.index"))
        error = (
            "La página de acceso había caducado: vuelva a intentarlo."
            if signed_in is None
            else f"Este navegador ya tiene abierta la sesión de {signed_in.email}: ciérrela antes de entrar con otra cuenta."
        )
        return render_template("login.html", next=target, error=error, email=email, sesion_abierta=signed_in), 400, {}
    password = request.form.get("password", "")
    try:
        LoginIn.model_validate({"email": email, "password": password})
    except ValidationError as exc:
        # What the API refuses as a 422 (a NUL, a lone surrogate, a field too long) is said on the form: passed on, a NUL
        # reached the e-mail lookup and PostgreSQL's driver refused it, a 500.
        mensaje = " ".join(error["mensaje"] for error in pydantic_errors(exc))
        return render_template("login.html", next=target, error=mensaje, email=""), 422, {}
    try:
        usuario, _ = auth.login(email, password, client_address())
    except AppError as exc:
        commit_or_problem()
        message = too_many_attempts(exc) if exc.status == 429 else "Correo o contraseña incorrectos."
        return render_template("login.html", next=target, error=message, email=email), exc.status, exc.headers
    # A login over an open session (a login page loaded while someone was signed in) ends that session, whose cookie
    # copies would otherwise stay valid until idle, and has the landing page forget its usuario's data if they were
    # someone else (their outbox stays, as at any logout).
    previous = page_user() if current_browser_session() is not None else None
    if previous is not None:
        end_session()
    start_session(usuario)
    if previous is not None and previous.id != usuario.id:
        session[_REPLACED_KEY] = previous.id
    # ?next= is followed only to local paths, so the login page cannot be used as an open redirect. Without one, an
    # officer lands on the phone page they came for, not on the operators' board (heavy on a slow link).
    landing = url_for("pages.index") if is_supervisor(usuario) else url_for("consola.mi_servicio")
    return redirect(target if is_local_path(target) else landing)


def too_many_attempts(exc: AppError) -> str:
    """The lock's message on a page, with how long it lasts (its Retry-After): «más tarde» left a person guessing."""
    seconds = int(exc.headers.get("Retry-After", "0") or 0) if exc.headers else 0
    minutos = max(1, -(-seconds // 60))
    return f"Demasiados intentos. Inténtelo dentro de {minutos} minuto{'s' if minutos != 1 else ''}."


@bp.post("/logout")
def logout() -> WerkzeugResponse | tuple[str, int, dict[str, str]]:
    signed_in = page_user()  # None: ended already (elsewhere, or idle), nothing left to end
    if signed_in is not None:
        if not csrf_matches(request.form.get("csrf_token")):
            # "Cerrar sesión" on a page of an earlier session (another tab has logged in since): the session open now
            # is ended only by a form it issued, so ask once more with its token instead of refusing for ever.
            error = f"Esa página era de una sesión anterior; la sesión abierta ahora es la de {signed_in.email}."
            return render_template("login.html", next="", error=error, email="", sesion_abierta=signed_in), 400, {}
        end_session()
        session[_LOGGED_OUT_KEY] = signed_in.id
    response = redirect(url_for("pages.login_form"))
    # The HTTP cache only: what the pages keep in the browser is forgotten by js/salida.js before this request, which
    # keeps another officer's outbox ("storage" here would drop an SOS left waiting when their session ended).
    response.headers["Clear-Site-Data"] = '"cache"'
    return response


@bp.get("/")
def index() -> WerkzeugResponse | str:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    return _render("tablero.html", usuario, tile_url=current_app.config["MAP_TILE_URL"])


@bp.get("/tareas/<int:tarea_id>")
def tarea_detalle(tarea_id: int) -> WerkzeugResponse | str:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    # An officer acts only on tareas assigned or delegated to them (the server refuses the rest): the page offers the
    # transitions only then, and needs to know which efectivo is theirs.
    mi_efectivo = None if is_supervisor(usuario) else efectivos.efectivo_id_of(usuario.id)
    return _render("tarea.html", usuario, tarea_id=tarea_id, mi_efectivo=mi_efectivo)


# The new-tarea form's fields, in order: name, label and input type ("select": the tipos; "decimal": a text field
# with the decimal keypad, since a number field in a Spanish-locale browser made «-3,7» -37, a spot in the Atlantic;
# the comma is read as the decimal point). tarea_nueva.html shows each with its error beside it.
_NUEVA_TAREA_CAMPOS = (
    ("codigo", "Código (MAYÚSCULAS, 3-20)", "text"),
    ("titulo", "Título", "text"),
    ("tipo", "Tipo", "select"),
    ("prioridad", "Prioridad (1-5)", "number"),
    ("descripcion", "Descripción", "text"),
    ("inicio_programado", "Inicio programado (ISO 8601 con zona, p. ej. 2026-12-01T08:00:00+01:00)", "text"),
    ("fin_programado", "Fin programado", "text"),
    ("ubicacion_lat", "Latitud", "decimal"),
    ("ubicacion_lng", "Longitud", "decimal"),
)
_NUEVA_TAREA_FIELDS = frozenset(name for name, _, _ in _NUEVA_TAREA_CAMPOS)


@bp.route("/tareas/nueva", methods=["GET", "POST"])
def tarea_nueva() -> WerkzeugResponse | str | tuple[str, int]:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    if not is_supervisor(usuario):
        abort(403)
    values: dict[str, str] = {}
    if request.method == "POST":
        check_csrf(request.form.get("csrf_token"))
        values = {k: v.strip() for k, v in request.form.items() if k != "csrf_token"}
        tarea_id, errors = _create_from_form(usuario, values)
        if tarea_id is not None:
            return redirect(url_for("pages.tarea_detalle", tarea_id=tarea_id))
        errors = _shown(errors)
        return _render("tarea_nueva.html", usuario, errors=errors, values=values, campos=_NUEVA_TAREA_CAMPOS, tipos=[t.value for t in TipoTarea]), 422
    return _render("tarea_nueva.html", usuario, errors={}, values=values, campos=_NUEVA_TAREA_CAMPOS, tipos=[t.value for t in TipoTarea])


def _create_from_form(usuario: Usuario, values: dict[str, str]) -> tuple[int | None, dict[str, str]]:
    """Create and commit a tarea from the form's fields: its id, or the error to show next to each field."""
    data: dict[str, Any] = {k: v for k, v in values.items() if v != ""}
    for name in ("ubicacion_lat", "ubicacion_lng"):
        if name in data and "." not in data[name]:
            data[name] = data[name].replace(",", ".", 1)
    if "ubicacion_lat" in data or "ubicacion_lng" in data:
        data.setdefault("ubicacion_lat", None)
        data.setdefault("ubicacion_lng", None)
    try:
        tarea = tareas.create_tarea(usuario, TareaIn.model_validate(data).model_dump())
    except ValidationError as exc:
        return None, _field_errors(exc)
    except AppError as exc:
        errors = {str(exc.extra.get("field") or "general"): exc.detail}
        for field_error in exc.errors or []:
            errors[field_error["field"].removeprefix("body.")] = field_error.get("mensaje") or field_error["message"]
        return None, errors
    if commit_or_problem() is not None:
        return None, {"general": "No se pudo guardar; inténtelo de nuevo."}
    return tarea.id, {}


def _shown(errors: dict[str, str]) -> dict[str, str]:
    """Errors on fields the form does not show (a field it never sends, from a hand-made POST) go to the top of
    the form, each named: a refused form must say why."""
    shown = {field: message for field, message in errors.items() if field in _NUEVA_TAREA_FIELDS}
    hidden = [f"{message} ({field})" for field, message in errors.items() if field not in _NUEVA_TAREA_FIELDS and field != "general"]
    general = " ".join(filter(None, [errors.get("general"), *hidden]))
    return shown | ({"general": general} if general else {})


def _field_errors(exc: ValidationError) -> dict[str, str]:
    """The first Spanish message per form field (the field is the first element of the error's path)."""
    errors: dict[str, str] = {}
    for err in pydantic_errors(exc, "body"):
        field = err["field"].removeprefix("body.").removeprefix("body") or "general"
        errors.setdefault(field.split(".")[0], err["mensaje"])
    return errors


@bp.get("/efectivos")
def efectivos_page() -> WerkzeugResponse | str:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    return _render("efectivos.html", usuario)


@bp.get("/usuarios")
def usuarios_page() -> WerkzeugResponse | str:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    if not is_admin(usuario):
        abort(403)
    return _render("usuarios.html", usuario)


@bp.get("/mapa")
def mapa() -> WerkzeugResponse | str:
    usuario = page_user()
    if usuario is None:
        return _login_redirect()
    return _render("mapa.html", usuario, tile_url=current_app.config["MAP_TILE_URL"])


__all__ = ["ESTADO_LABELS", "EstadoTarea", "bp"]
