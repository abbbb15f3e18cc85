"""Browser pages added for operators and field staff: the filtered, paged tarea list and /mi (the phone page).

Shells rendered by the server; data and actions go through the JSON API from ES modules under gad/static/js.
/mi is installable: a web app manifest (static) and a service worker served from /mi/sw.js, whose scope is the page.
"""

from __future__ import annotations

from flask import Blueprint, current_app, request, send_from_directory
from werkzeug.wrappers import Response as WerkzeugResponse

from gad.blueprints.pages import _login_redirect, _page_user, _render
from gad.policy import is_supervisor
from gad.vocab import EstadoTarea, TipoTarea

bp = Blueprint("consola", __name__)


@bp.get("/tareas")
def tareas_lista() -> WerkzeugResponse | str:
    usuario = _page_user()
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
    usuario = _page_user()
    if usuario is None:
        return _login_redirect()
    return _render("mi.html", usuario, operador=is_supervisor(usuario))


@bp.get("/mi/sw.js")
def service_worker() -> WerkzeugResponse:
    # Served under /mi/ so its default scope is the phone page; never cached by HTTP so an update reaches phones.
    response = send_from_directory(current_app.static_folder or "static", "mi/sw.js", mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    # The page is /mi (no trailing slash), one level above the worker's default scope /mi/.
    response.headers["Service-Worker-Allowed"] = "/mi"
    return response
