"""The pages when the session ends under them, when a button is hit twice, and when a page cannot be shown: what a
tester found an officer's phone and an operator's board did (an SOS raised in the next officer's name, two
emergencies for one tap, a board that silently stopped updating, raw English JSON in a tab)."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Any

import requests
from playwright.sync_api import Browser, Page, Playwright, expect
from sqlalchemy import text

from gad.extensions import db
from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer
from tests.support.browser import context_options, logged_in, server_without_tiles_fixture

server = server_without_tiles_fixture("server")


def _api(server: LiveServer, build: Builders, who: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url + path, headers=build.headers(who, **kwargs.pop("headers", {})), timeout=30, **kwargs)


def _officer(build: Builders, nombre: str) -> Any:
    officer = build.usuario(1, nombre=nombre, apellido="Campo")
    build.efectivo(usuario_id=officer.id, nombre=f"Agente {nombre}", lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC))
    return officer


def _emergencies(server: LiveServer, build: Builders, sup: Any) -> list[dict[str, Any]]:
    answer = _api(server, build, sup, "GET", "/api/v1/tasks?tipo=emergencia&limit=50")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def _log_in(page: Page, email: str, landing: str) -> None:
    page.goto("/login?next=" + landing)
    page.get_by_label("Correo electrónico").fill(email)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    page.wait_for_url("**" + landing)


def _queued_sos(page: Page, usuario_id: int) -> int:
    return int(page.evaluate("(k) => JSON.parse(localStorage.getItem(k) ?? '[]').filter((q) => q.kind === 'sos').length", f"gad:mi:cola:{usuario_id}"))


def _sos_waiting_when_the_session_ended(server: LiveServer, build: Builders, context: Any, page: Page, officer: Any) -> None:
    """An SOS raised without coverage, then the officer's session ended from another device; coverage back."""
    expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
    context.set_offline(True)
    page.locator("#sos").click()
    expect(page.locator("#sos-resultado")).to_contain_text("Sin cobertura")
    assert _api(server, build, officer, "POST", "/api/v1/auth/logout-all").status_code == 204
    context.set_offline(False)


def test_an_sos_after_the_session_ended_says_so_and_is_sent_only_in_its_officers_name(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The phone said "Sin cobertura" for an SOS refused with 401, and kept it in one outbox for the phone: the next
    officer to log in sent it in their own name, and dispatch sent the officer in distress to their own emergency."""
    sup = build.usuario(2)
    elena, eduardo = _officer(build, "Elena"), _officer(build, "Eduardo")
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        assert _api(server, build, elena, "POST", "/api/v1/auth/logout-all").status_code == 204  # ended from another device
        page.locator("#sos").click()
        resultado = page.locator("#sos-resultado")
        expect(resultado).to_contain_text("Su sesión ha caducado: el SOS NO se ha enviado")
        expect(page.locator("#sesion")).to_be_visible()
        expect(page.locator("#sesion").get_by_role("link", name="Volver a entrar")).to_be_visible()
        page.locator("#sos").click()  # pressed again: still one SOS waiting, not two
        expect(resultado).to_contain_text("Su sesión ha caducado")
        assert _queued_sos(page, elena.id) == 1
        expect(page.locator("#cola-resumen")).to_have_text("1 acción y 0 posiciones esperando cobertura.")
        assert _emergencies(server, build, sup) == []

        _log_in(page, eduardo.email, "/mi")  # the next shift, on the same phone
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        page.wait_for_timeout(1000)
        assert _emergencies(server, build, sup) == []  # never in Eduardo's name
        assert _queued_sos(page, elena.id) == 1
        page.get_by_role("button", name="Cerrar sesión").click()  # the end of Eduardo's shift
        page.wait_for_url("**/login")
        assert _queued_sos(page, elena.id) == 1  # his logout forgets what was his, not Elena's waiting SOS

        _log_in(page, elena.email, "/mi")  # Elena back: her SOS goes, as hers
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=15_000)
        [emergencia] = _emergencies(server, build, sup)
        assert emergencia["creado_por_usuario_id"] == elena.id


def test_an_old_tab_of_an_officer_neither_sends_their_sos_as_the_next_nor_drops_it(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Elena's tab stayed open on the shared phone after her session ended and Eduardo logged in in another tab: it
    sent her outbox with his cookie, refused for its stale CSRF token, so her SOS was dropped as "not applied"; and
    it reloaded his tareas and questions under her name."""
    sup = build.usuario(2)
    elena, eduardo = _officer(build, "Elena"), _officer(build, "Eduardo")
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (context, page):
        _sos_waiting_when_the_session_ended(server, build, context, page, elena)
        other = context.new_page()
        _log_in(other, eduardo.email, "/mi")
        expect(other.locator("#mi-efectivo")).to_contain_text("Agente Eduardo")
        page.evaluate("window.dispatchEvent(new Event('online'))")  # her tab sends its outbox and reloads
        expect(page.locator("#sesion")).to_be_visible(timeout=10_000)
        expect(page.locator("#sesion-texto")).to_contain_text("1 acción espera")
        page.wait_for_timeout(1000)
        assert _queued_sos(page, elena.id) == 1
        expect(page.locator("#conflictos li")).to_have_count(0)
        expect(page.locator("#mi-efectivo")).not_to_contain_text("Eduardo")
        assert _emergencies(server, build, sup) == []


def test_an_old_tab_of_the_same_officer_keeps_their_sos_for_the_tab_of_the_session_open_now(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Elena's session ended and she logged in again: her old tab, whose CSRF token was the old session's, sent her
    waiting SOS first, was refused (403) and listed it as not applied; the tab of her new session then had nothing to send."""
    sup = build.usuario(2)
    elena = _officer(build, "Elena")
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (context, page):
        _sos_waiting_when_the_session_ended(server, build, context, page, elena)
        form = page.request.get("/login").text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        assert page.request.post("/login", form={"email": elena.email, "password": PASSWORD, "csrf_token": token.group(1)}, max_redirects=0).status == 302
        page.evaluate("window.dispatchEvent(new Event('online'))")  # the old tab tries first, with its old token
        page.wait_for_timeout(1500)
        assert _queued_sos(page, elena.id) == 1
        expect(page.locator("#conflictos li")).to_have_count(0)
        new_tab = context.new_page()
        new_tab.goto("/mi")
        expect(new_tab.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=15_000)
        [emergencia] = _emergencies(server, build, sup)
        assert emergencia["creado_por_usuario_id"] == elena.id


def test_an_sos_sent_when_coverage_comes_back_says_who_is_coming(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Once the outbox sent an SOS raised without coverage, the screen still said "Sin cobertura: el SOS se enviará"
    and never named who was coming."""
    sup = build.usuario(2)
    officer = _officer(build, "Irene")
    build.efectivo(nombre="Agente Cercano", lat=40.4170, lon=-3.7036, posicion_en=datetime.now(UTC))
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (context, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        context.set_offline(True)
        page.locator("#sos").click()
        resultado = page.locator("#sos-resultado")
        expect(resultado).to_contain_text("Sin cobertura")
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(resultado).to_contain_text("va en camino Agente Cercano", timeout=15_000)
        [emergencia] = _emergencies(server, build, sup)
        expect(resultado).to_contain_text(f"SOS {emergencia['codigo']}")


def test_an_answer_refused_after_coverage_came_back_names_its_tarea(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """ "Acepto: no se aplicó — Esa asignación ya no está en pie" did not say which of the officer's assignments."""
    sup = build.usuario(2)
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Paula")
    tarea = build.tarea(sup, titulo="Vigilancia del puerto")
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (context, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        assigned = _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [efectivo.id]})
        assert assigned.status_code == 200, assigned.text
        expect(page.locator("#alerta-texto")).to_contain_text(tarea.codigo, timeout=10_000)
        expect(page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')).to_be_visible()
        context.set_offline(True)
        page.get_by_role("button", name="Acepto").click()
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/estado", json={"estado": "cancelada"}).status_code == 200
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#conflictos")).to_contain_text(f"Acepto {tarea.codigo}: no se aplicó", timeout=10_000)


def test_a_double_tapped_sos_raises_one_emergency(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    sup = build.usuario(2)
    officer = _officer(build, "Rosa")
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        page.locator("#sos").dblclick()
        expect(page.locator("#sos-resultado")).to_contain_text("SOS EMG-", timeout=15_000)
        page.wait_for_timeout(1000)
        assert len(_emergencies(server, build, sup)) == 1


def test_a_double_tap_on_iniciar_starts_the_tarea_and_does_not_pause_it(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The card was redrawn with "Pausar" where "Iniciar" was, and the second tap of a double tap paused the tarea."""
    sup = build.usuario(2)
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    tarea = build.tarea(sup, titulo="Ronda del puerto")
    build.asignacion(tarea, efectivo)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (_, page):
        card = page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')
        card.get_by_role("button", name="Iniciar").dblclick()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        page.wait_for_timeout(1000)
        historial = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}/historial").json()
        assert [h["estado_nuevo"] for h in historial] == ["en_curso"]
        expect(card.get_by_role("button", name="Pausar")).to_be_enabled()  # usable again once the moment has passed


def test_a_start_the_server_took_stays_shown_when_the_reload_after_it_fails(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The card showed the start only while it waited in the outbox: sent, and with the reload after it failing (the
    coverage gone), it went back to "Programada" with "Iniciar", here and in the copy a reload without coverage shows."""
    sup = build.usuario(2)
    officer = build.usuario(1)
    tarea = build.tarea(sup, titulo="Ronda del mercado")
    build.asignacion(tarea, build.efectivo(usuario_id=officer.id))
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (_, page):
        card = page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')
        expect(card).to_have_attribute("data-estado", "programada")
        page.route("**/api/v1/tasks?estado=*", lambda route: route.abort())  # every reload of the list fails from now on
        card.get_by_role("button", name="Iniciar").click()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        page.wait_for_timeout(1500)  # past the redraw that follows a tap
        expect(card).to_have_attribute("data-estado", "en_curso")
        expect(card.get_by_role("button", name="Pausar")).to_be_visible()
        kept = page.evaluate("() => JSON.parse(localStorage.getItem('gad:mi:datos')).tareas")
        assert [t["estado"] for t in kept if t["id"] == tarea.id] == ["en_curso"]
        assert _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()["estado"] == "en_curso"


def test_an_officer_who_raised_an_sos_is_offered_no_buttons_the_server_refuses(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    sup = build.usuario(2)
    reporter = build.usuario(1)
    suyo = build.efectivo(usuario_id=reporter.id)
    asignada = build.tarea(sup)
    build.asignacion(asignada, suyo)
    raised = _api(server, build, reporter, "POST", "/api/v1/tasks/emergency", json={"lat": 40.4169, "lng": -3.7035})
    assert raised.status_code == 201, raised.text
    tarea_id = raised.json()["tarea"]["id"]
    assert _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea_id}").status_code == 200
    with logged_in(browser, pw, server.url, reporter.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (_, page):
        card = page.locator(f'#actuales [data-tarea-id="{tarea_id}"]')
        expect(card).to_contain_text("Usted dio el aviso: la central la gestiona.")
        expect(card.get_by_role("button")).to_have_count(0)
        # Its own page too (it offered "Pasar a Finalizada / Pasar a Pausada", each refused with a 403).
        page.goto(f"/tareas/{tarea_id}")
        expect(page.locator("#tarea-estado")).to_have_text("En curso")
        expect(page.locator("#acciones button")).to_have_count(0)
        expect(page.locator("#motivo")).to_be_hidden()
        page.goto(f"/tareas/{asignada.id}")  # one assigned to them: its transitions are theirs
        expect(page.get_by_role("button", name="Pasar a En curso")).to_be_visible()
        expect(page.locator("#motivo")).to_be_visible()


def test_a_board_whose_session_ended_elsewhere_says_so(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The board said "Sin conexión — reintentando" for ever against a 401: an operator took it for the network."""
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        assert _api(server, build, sup, "POST", "/api/v1/auth/logout-all").status_code == 204
        aviso = page.locator("#sesion-caducada")
        expect(aviso).to_contain_text("Su sesión ha caducado", timeout=15_000)
        expect(page.locator("#conexion")).to_have_text("Sesión caducada")
        aviso.get_by_role("link", name="Volver a entrar").click()
        page.get_by_label("Correo electrónico").fill(sup.email)
        page.get_by_label("Contraseña").fill(PASSWORD)
        page.get_by_role("button", name="Entrar").click()
        page.wait_for_url(server.url + "/")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)


def test_pages_that_cannot_be_shown_answer_in_spanish_and_stale_forms_do_not_end_in_json(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    officer = build.usuario(1)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "escritorio", landing="/tareas") as (context, page):
        forbidden = page.goto("/tareas/nueva")
        assert forbidden is not None and forbidden.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text("Sin permiso")
        missing = page.goto("/no-existe")
        assert missing is not None and missing.status == 404 and missing.headers["content-type"].startswith("text/html")
        expect(page.get_by_role("heading", level=1)).to_have_text("Página no encontrada")
        # A script is still answered as a script is: problem+json.
        api = page.request.get("/api/v1/no-existe")
        assert api.status == 404 and api.headers["content-type"] == "application/problem+json"

        # "Cerrar sesión" in a second tab after the first already logged out: the login page, not a CSRF error.
        second = context.new_page()
        second.goto("/tareas")
        page.goto("/tareas")
        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_url("**/login")
        second.get_by_role("button", name="Cerrar sesión").click()
        second.wait_for_url("**/login")
        expect(second.get_by_role("button", name="Entrar")).to_be_visible()

        # A login form left open in one tab while the other logged in: it goes where the usuario wanted.
        page.goto("/login")
        second.goto("/login?next=/tareas")
        page.get_by_label("Correo electrónico").fill(officer.email)
        page.get_by_label("Contraseña").fill(PASSWORD)
        page.get_by_role("button", name="Entrar").click()
        page.wait_for_url(server.url + "/mi")  # an officer lands on their phone page
        second.get_by_label("Correo electrónico").fill(officer.email)
        second.get_by_label("Contraseña").fill(PASSWORD)
        second.get_by_role("button", name="Entrar").click()
        second.wait_for_url("**/tareas")

        # Someone else typing into a form that old, in the same browser, must not land in the open session.
        supervisor = build.usuario(2)
        third = context.new_page()
        third.goto("/login")
        page.goto("/tareas")
        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_url("**/login")
        page.get_by_label("Correo electrónico").fill(officer.email)
        page.get_by_label("Contraseña").fill(PASSWORD)
        page.get_by_role("button", name="Entrar").click()
        page.wait_for_url(server.url + "/mi")
        third.get_by_label("Correo electrónico").fill(supervisor.email)
        third.get_by_label("Contraseña").fill(PASSWORD)
        third.get_by_role("button", name="Entrar").click()
        expect(third.get_by_role("alert")).to_contain_text(f"ya tiene abierta la sesión de {officer.email}")
        assert third.request.get("/api/v1/users/me").json()["email"] == officer.email
        with third.expect_navigation():  # from /login to /login: the address alone does not show it happened
            third.get_by_role("button", name="Cerrar la sesión abierta").click()
        third.get_by_label("Correo electrónico").fill(supervisor.email)
        third.get_by_label("Contraseña").fill(PASSWORD)
        third.get_by_role("button", name="Entrar").click()
        third.wait_for_url(server.url + "/")

        # "Cerrar sesión" on the officer's page, whose session the supervisor's login replaced: it asks again, with
        # the open session's own token, instead of refusing for ever.
        page.get_by_role("button", name="Cerrar sesión").click()
        expect(page.get_by_role("alert")).to_contain_text(f"la sesión abierta ahora es la de {supervisor.email}")
        assert page.request.get("/api/v1/users/me").json()["email"] == supervisor.email
        with page.expect_navigation():  # from /login to /login: the address alone does not show it happened
            page.get_by_role("button", name="Cerrar la sesión abierta").click()
        assert page.request.get("/api/v1/users/me").status == 401


def test_logging_out_leaves_nothing_of_the_officer_on_the_phone(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The phone kept the last officer's tareas (a protected witness's address among them) and outbox after logout."""
    officer = _officer(build, "Lucía")
    context = browser.new_context(**context_options(pw, "movil", server.url))
    try:
        page = context.new_page()
        _log_in(page, officer.email, "/mi")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        assert page.evaluate("() => localStorage.getItem('gad:mi:datos')") is not None
        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_url("**/login")
        assert page.evaluate("() => localStorage.length") == 0
        assert page.evaluate("async () => (await caches.keys()).length") == 0
    finally:
        context.close()
    # The page could not learn who was signed in (that read failed), so it forgot nothing before the logout: the
    # server's word on whom it logged out, read by the login page, still leaves nothing of the officer. (Without a
    # service worker, which would take the request out of the route's reach.)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (context, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        assert page.evaluate("() => localStorage.getItem('gad:mi:datos')") is not None
        unavailable = '{"status": 503, "title": "Service Unavailable"}'
        page.route("**/api/v1/users/me", lambda route: route.fulfill(status=503, content_type="application/problem+json", body=unavailable))
        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_url("**/login")
        page.wait_for_function("() => localStorage.length === 0", timeout=5000)
        page.unroute("**/api/v1/users/me")

        # A slow link (no answer within 4 s) is not no coverage: the logout still goes.
        _log_in(page, officer.email, "/mi")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)

        def slowly(route: Any) -> None:
            page.wait_for_timeout(6000)
            with contextlib.suppress(Exception):  # the page gave up on it at 4 s
                route.continue_()

        page.route("**/api/v1/users/me", slowly)
        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_url("**/login", timeout=15_000)
        page.wait_for_function("() => localStorage.length === 0", timeout=5000)
        page.unroute("**/api/v1/users/me")

        # Without coverage nothing can be ended: it says so, and neither leaves the page nor forgets anything.
        _log_in(page, officer.email, "/mi")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        context.set_offline(True)
        said: list[str] = []
        page.once("dialog", lambda dialog: (said.append(dialog.message), dialog.accept()))
        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_timeout(1500)
        assert said == ["Sin cobertura: la sesión no se ha cerrado y no se ha borrado nada. Vuelva a intentarlo cuando haya red."]
        assert page.url.endswith("/mi") and page.evaluate("() => localStorage.getItem('gad:mi:datos')") is not None
        context.set_offline(False)
        assert page.request.get("/api/v1/users/me").json()["email"] == officer.email


def test_logging_out_with_an_action_waiting_asks_first_and_then_leaves_nothing(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """An officer whose session had ended tapped "Cerrar sesión" with an action still waiting: it was dropped without a
    word, and the phone kept their tareas (with no session to end, the server answered nothing that cleared them)."""
    officer = _officer(build, "Marta")
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (context, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        context.set_offline(True)  # taken before the session ended (once ended, the page offers no availability)
        page.get_by_role("button", name="Fuera de servicio").click()
        expect(page.locator("#cola-resumen")).to_have_text("1 acción y 0 posiciones esperando cobertura.")
        assert _api(server, build, officer, "POST", "/api/v1/auth/logout-all").status_code == 204
        context.set_offline(False)
        asked: list[str] = []

        def answer(dialog: Any, accept: bool) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        page.once("dialog", lambda dialog: answer(dialog, accept=False))
        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_timeout(1000)  # time for a logout, had one started, to land
        assert asked == ["Hay 1 acción sin enviar: si cierra la sesión no se enviará. ¿Cerrar la sesión?"]
        assert page.url.endswith("/mi")  # not logged out: the officer chose to keep it, and it is still kept
        assert page.evaluate("(k) => JSON.parse(localStorage.getItem(k) ?? '[]').length", f"gad:mi:cola:{officer.id}") == 1
        expect(page.locator("#cola-resumen")).to_have_text("1 acción y 0 posiciones esperando cobertura.")
        page.once("dialog", lambda dialog: answer(dialog, accept=True))
        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_url("**/login")
        assert len(asked) == 2
        assert page.evaluate("() => localStorage.length") == 0


def test_a_logout_forgets_the_data_of_whoever_the_server_logs_out_and_nobody_elses(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Two ways a logout forgot the wrong usuario's data. "Cerrar sesión" on Elena's page, whose session had ended,
    tapped after Eduardo logged in from another tab, dropped Elena's waiting SOS though the server logged nobody out;
    and "Cerrar la sesión abierta" on the login page ended Eduardo's session but left his tareas on the phone."""
    elena, eduardo = _officer(build, "Elena"), _officer(build, "Eduardo")
    context = browser.new_context(**context_options(pw, "movil", server.url), service_workers="block")
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        _log_in(page, elena.email, "/mi")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        assert _api(server, build, elena, "POST", "/api/v1/auth/logout-all").status_code == 204
        page.locator("#sos").click()
        expect(page.locator("#sos-resultado")).to_contain_text("Su sesión ha caducado")
        assert _queued_sos(page, elena.id) == 1

        other = context.new_page()
        _log_in(other, eduardo.email, "/mi")
        expect(other.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        page.get_by_role("button", name="Cerrar sesión").click()  # Elena's old page: the server asks, logs nobody out
        expect(page.get_by_role("alert")).to_contain_text(f"la sesión abierta ahora es la de {eduardo.email}")
        assert _queued_sos(page, elena.id) == 1
        assert page.evaluate("() => localStorage.getItem('gad:mi:datos')") is not None  # Eduardo's copy, his session open

        page.get_by_role("button", name="Cerrar la sesión abierta").click()  # now Eduardo's session ends, and his data
        page.wait_for_url("**/login")
        assert page.request.get("/api/v1/users/me").status == 401
        assert page.evaluate("() => localStorage.getItem('gad:mi:datos')") is None
        assert _queued_sos(page, elena.id) == 1  # still waiting for Elena
    finally:
        context.close()


def test_logging_in_over_another_officers_open_session_leaves_nothing_of_theirs_but_their_outbox(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The supervisor opened the login page on the phone Elena had left signed in, and logged in: her session stayed
    open (a copy of its cookie still answered) and her tareas stayed on the phone."""
    elena = _officer(build, "Elena")
    supervisor = build.usuario(2)
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        assert page.evaluate("() => localStorage.getItem('gad:mi:datos')") is not None
        page.goto("/login")  # a login page of its own, with Elena's session open
        # What her outbox would hold had her coverage gone with an SOS waiting (put here, where no page sends it).
        page.evaluate(
            "(k) => localStorage.setItem(k, JSON.stringify([{key: 'k1', kind: 'sos', method: 'POST', path: '/x', label: 'SOS'}]))", f"gad:mi:cola:{elena.id}"
        )
        page.get_by_label("Correo electrónico").fill(supervisor.email)
        page.get_by_label("Contraseña").fill(PASSWORD)
        page.get_by_role("button", name="Entrar").click()
        page.wait_for_url(server.url + "/")
        page.wait_for_function("() => localStorage.getItem('gad:mi:datos') === null", timeout=5000)  # her tareas
        assert _queued_sos(page, elena.id) == 1  # hers, sent when she logs in again


def test_a_double_click_on_enviar_alerta_sends_one_alert(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    sup = build.usuario(2)
    build.usuario(1)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/tareas") as (_, page):
        page.get_by_role("button", name="Notificaciones").click()
        form = page.get_by_role("form", name="Enviar alerta")
        form.get_by_label("Texto").fill("Corte de tráfico en la M-30")
        form.get_by_role("button", name="Enviar alerta").dblclick()
        expect(page.locator("#alertas-abiertas .alerta")).to_have_count(1)
        page.wait_for_timeout(1000)
        assert _api(server, build, sup, "GET", "/api/v1/alertas").json()["total"] == 1


def test_a_page_without_a_live_view_says_how_its_trays_socket_is(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Informes and Usuarios said "Sin conexión" for as long as they were open, though the tray's socket was live."""
    admin = build.usuario(3)
    with logged_in(browser, pw, server.url, admin.email, PASSWORD, "escritorio", landing="/informes") as (_, page):
        expect(page.locator("#conexion")).to_have_text("En vivo", timeout=10_000)
        page.goto("/usuarios")
        expect(page.locator("#conexion")).to_have_text("En vivo", timeout=10_000)
        assert _api(server, build, admin, "POST", "/api/v1/auth/logout-all").status_code == 204
        expect(page.locator("#conexion")).to_have_text("Sesión caducada", timeout=15_000)


def test_the_trays_socket_is_one_and_opens_whatever_the_first_loads_meet(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The tray guessed from a 1.5 s delay whether the page had a socket: beside a board whose data came slower it
    opened a second one; and a 503 on its first read of the notifications stopped it before it opened any."""
    admin = build.usuario(3)
    with logged_in(browser, pw, server.url, admin.email, PASSWORD, "escritorio", landing="/informes") as (_, page):
        expect(page.locator("#conexion")).to_have_text("En vivo", timeout=10_000)
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        failed: list[str] = []

        def unavailable_once(route: Any) -> None:
            if failed:
                route.continue_()
            else:
                failed.append(route.request.url)
                route.fulfill(status=503, content_type="application/problem+json", body='{"status": 503, "title": "Service Unavailable"}')

        page.route("**/api/v1/notificaciones?limit=30", unavailable_once)
        page.goto("/usuarios")
        expect(page.locator("#conexion")).to_have_text("En vivo", timeout=10_000)
        assert failed and len(sockets) == 1
        page.unroute("**/api/v1/notificaciones?limit=30")

        def slowly(route: Any) -> None:
            page.wait_for_timeout(3000)
            route.continue_()

        page.route("**/api/v1/tasks?estado=programada*", slowly)
        sockets.clear()
        page.goto("/")
        expect(page.locator("#conexion")).to_have_text("En vivo", timeout=15_000)
        page.wait_for_timeout(1000)
        assert len(sockets) == 1, sockets


def test_the_report_prints(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Its button was an inline onclick, which the Content-Security-Policy blocks: it did nothing."""
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/informes") as (_, page):
        page.evaluate("() => { window.printed = 0; window.print = () => { window.printed += 1; }; }")
        page.get_by_role("button", name="Imprimir").click()
        assert page.evaluate("() => window.printed") == 1


def test_a_tarea_without_a_place_can_still_be_assigned_from_its_page(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The page offered the nearest disponibles only, so a tarea without coordinates showed no way to assign anyone."""
    sup = build.usuario(2)
    efectivo = build.efectivo(nombre="Agente Sin Mapa", estado_disponibilidad="disponible")
    tarea = build.tarea(sup, titulo="Guardia en la oficina", ubicacion_lat=None, ubicacion_lon=None)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing=f"/tareas/{tarea.id}") as (_, page):
        expect(page.locator("#asignar-titulo")).to_have_text("Asignar (disponibles; la tarea no tiene ubicación)")
        page.get_by_role("button", name="Asignar a Agente Sin Mapa").click()
        expect(page.locator("#asignados")).to_contain_text("Agente Sin Mapa")
    assert [a["efectivo_id"] for a in _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()["efectivos"]] == [efectivo.id]


def test_the_tray_closes_like_a_menu_and_the_board_names_events_in_spanish(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    sup = build.usuario(2)
    build.usuario(1)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        boton = page.get_by_role("button", name="Notificaciones")
        boton.click()
        expect(page.locator("#bandeja-panel")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#bandeja-panel")).to_be_hidden()
        expect(boton).to_be_focused()
        boton.click()
        page.mouse.click(300, 700)  # anywhere outside it
        expect(page.locator("#bandeja-panel")).to_be_hidden()
        body = {"tipo": "aviso", "texto": "Revisión de material", "destino": "todos"}
        assert _api(server, build, sup, "POST", "/api/v1/alertas", json=body).status_code == 201
        feed = page.locator("#feed")
        expect(feed).to_contain_text("Alerta enviada")
        expect(feed).not_to_contain_text("notification")


def _kept_page_for_offline(page: Page) -> None:
    """Until the service worker controls /mi and keeps the copy drawn for this page's usuario."""
    page.evaluate("navigator.serviceWorker.ready")
    for _ in range(100):
        if page.evaluate("navigator.serviceWorker.controller !== null"):
            break
        page.wait_for_timeout(100)
    page.reload()  # controlled now: this answer is the copy
    expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
    assert page.evaluate("async () => Boolean(await caches.match('/mi'))")


def _unused_for_two_days(page: Page, usuario_id: int) -> None:
    """As the phone would reckon it had it heard nothing from the server for two days. First away from /mi: its live
    socket (whose frames are use) closed, as two days without use would have closed it."""
    page.goto("/static/css/app.css")
    page.evaluate(
        """(key) => {
            const limits = JSON.parse(localStorage.getItem(key));
            localStorage.setItem(key, JSON.stringify({ ...limits, visto: limits.visto - 2 * 86400000 }));
        }""",
        f"gad:sesion:{usuario_id}",
    )


def _idled_out(build: Builders, page: Page, usuario_id: int) -> None:
    """Two days without use, for the server (its sessions) and for the phone (when it last heard from it)."""
    _unused_for_two_days(page, usuario_id)
    with build.app.app_context():
        db.session.execute(text("UPDATE sesiones SET last_seen_at = now() - interval '2 days' WHERE usuario_id = :u"), {"u": usuario_id})
        db.session.commit()


def test_a_shared_phone_shows_the_next_officer_nothing_of_an_idled_out_session_and_names_what_waits_for_it(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Elena's session idled out; Eduardo, with the phone and no coverage, opened the service worker's copy of /mi:
    he saw her tareas, his SOS said "se enviará en cuanto haya red" and went into her outbox; logged in as himself he
    read "Todo enviado." while it waited for her; and he inherited her "no compartir" (dispatch goes by positions)."""
    sup = build.usuario(2)
    elena = build.usuario(1, nombre="Elena", apellido="Campo")
    suyo = build.efectivo(usuario_id=elena.id, nombre="Agente Elena", lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC))
    eduardo = _officer(build, "Eduardo")
    tarea = build.tarea(sup, titulo="Vigilancia de Elena", tipo="vigilancia", descripcion="Datos reservados de Elena")
    build.asignacion(tarea, suyo)
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi") as (context, page):
        expect(page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')).to_be_visible()
        _kept_page_for_offline(page)
        page.locator("#compartir").uncheck()

        _idled_out(build, page, elena.id)
        context.set_offline(True)
        page.goto("/mi")  # Eduardo opens the phone's page: the copy drawn for Elena
        expect(page.locator("#sesion")).to_be_visible()
        expect(page.locator("#mi-efectivo")).to_have_text("Sesión caducada: sus datos no se muestran hasta que vuelva a entrar.")
        expect(page.locator("#actuales")).not_to_contain_text("Vigilancia de Elena")
        page.get_by_role("button", name="Notificaciones").click()
        expect(page.locator("#bandeja-lista")).to_have_count(1)
        expect(page.locator("#bandeja-lista li")).to_have_count(0)  # her kept tray is not shown either
        page.get_by_role("button", name="Notificaciones").click()
        page.locator("#sos").click()
        resultado = page.locator("#sos-resultado")
        expect(resultado).to_contain_text("el SOS NO se ha enviado. Llame a la central.")
        expect(resultado).to_contain_text("a nombre de Elena Campo")
        assert _queued_sos(page, elena.id) == 1

        context.set_offline(False)
        _log_in(page, eduardo.email, "/mi")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        ajenas = page.locator("#ajenas")
        expect(ajenas).to_be_visible()
        expect(ajenas).to_contain_text("un SOS pulsado a las")
        expect(ajenas).to_contain_text("de la sesión de Elena Campo")
        expect(ajenas).to_contain_text("llame a la central")
        expect(page.locator("#compartir")).to_be_checked()  # his own choice, not hers
        page.wait_for_timeout(1000)
        assert _emergencies(server, build, sup) == []  # never in Eduardo's name
        assert _queued_sos(page, elena.id) == 1

        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_url("**/login")
        _log_in(page, elena.email, "/mi")  # Elena back: her outbox goes, nothing else waits, her choice is hers
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=15_000)
        expect(page.locator("#ajenas")).to_be_hidden()
        expect(page.locator("#compartir")).not_to_be_checked()
        [emergencia] = _emergencies(server, build, sup)
        assert emergencia["creado_por_usuario_id"] == elena.id


def test_a_session_the_server_ended_takes_the_kept_copy_of_its_page_with_it(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """A 401 said the session was over, but the service worker kept /mi as drawn for it: opened again without coverage
    (by whoever had the phone next) it showed that officer's tareas."""
    elena = _officer(build, "Elena")
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi") as (_, page):
        _kept_page_for_offline(page)
        assert _api(server, build, elena, "POST", "/api/v1/auth/logout-all").status_code == 204  # ended from another device
        expect(page.locator("#sesion")).to_be_visible(timeout=15_000)  # its socket, refused, asked the server: 401
        for _ in range(50):
            if not page.evaluate("async () => Boolean(await caches.match('/mi'))"):
                break
            page.wait_for_timeout(100)
        assert not page.evaluate("async () => Boolean(await caches.match('/mi'))")
        assert page.evaluate("async () => Boolean(await caches.match('/static/js/mi.js'))")  # the shell stays


def test_an_sos_whose_request_hangs_is_given_up_said_and_sent_once_later(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """On a link that takes a request and never answers, the SOS said "Enviando SOS…" for as long as it hung, and the
    outbox, which sends one item at a time, sent nothing else behind it."""
    sup = build.usuario(2)
    elena = _officer(build, "Elena")
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        hung: list[Any] = []
        page.route("**/api/v1/tasks/emergency", lambda route: hung.append(route))  # taken, never answered
        page.locator("#sos").click()
        resultado = page.locator("#sos-resultado")
        expect(resultado).to_have_text("Enviando SOS…")
        expect(resultado).to_contain_text("Sin cobertura: el SOS se enviará en cuanto haya red", timeout=25_000)
        assert len(hung) == 1
        page.get_by_role("button", name="No disponible").click()  # not stuck behind the SOS: the outbox tries again
        page.unroute("**/api/v1/tasks/emergency")
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(resultado).to_contain_text("SOS", timeout=15_000)
        expect(resultado).not_to_contain_text("Sin cobertura", timeout=15_000)
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=15_000)
        assert len(_emergencies(server, build, sup)) == 1  # sent again with its Idempotency-Key: applied once


def test_the_phone_page_opens_from_its_copy_when_the_link_hangs_and_the_late_answer_refreshes_it(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Through a link that took the request and never answered, /mi was a blank page for as long as it hung: the
    service worker asked the network first and waited for it without limit."""
    sup = build.usuario(2)
    elena = build.usuario(1, nombre="Elena", apellido="Campo")
    suyo = build.efectivo(usuario_id=elena.id, nombre="Agente Elena", lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC))
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi") as (context, page):
        _kept_page_for_offline(page)
        kept_head = page.evaluate("async () => /data-last-event-id=\"(\\d+)\"/.exec(await (await caches.match('/mi')).text())[1]")
        hung: list[Any] = []
        context.route("**/mi", lambda route: hung.append(route))  # the worker's request for the page: taken, not answered
        tab = context.new_page()
        started = datetime.now(UTC)
        tab.goto("/mi", wait_until="commit", timeout=15_000)
        assert (datetime.now(UTC) - started).total_seconds() < 10
        expect(tab.locator("#mi-efectivo")).to_contain_text("Agente Elena")  # the copy, its session still standing
        assert tab.evaluate("document.body.dataset.lastEventId") is None  # a copy: it reads everything afresh
        assert len(hung) == 1
        moved = _api(server, build, sup, "PUT", f"/api/v1/efectivos/{suyo.id}/ubicacion", json={"lat": 40.42, "lng": -3.70})
        assert moved.status_code == 200  # an event: the page the server draws now has a newer head
        hung.pop().continue_()
        for _ in range(50):
            head = tab.evaluate("async () => /data-last-event-id=\"(\\d+)\"/.exec(await (await caches.match('/mi')).text())[1]")
            if int(head) > int(kept_head):
                break
            tab.wait_for_timeout(100)
        assert int(head) > int(kept_head), "the late answer did not refresh the kept copy"
        context.unroute("**/mi")


def test_a_session_judged_over_without_coverage_that_the_server_still_holds_goes_on_when_it_answers(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The page reckons its session's end from the last answer it heard: one it missed (an answer lost on the way)
    leaves the server's session longer than its reckoning. Judged over without coverage, it must not stay "caducada",
    its live socket down for good, once the server answers."""
    elena = build.usuario(1, nombre="Elena", apellido="Campo")
    build.efectivo(usuario_id=elena.id, nombre="Agente Elena", lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC))
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi") as (context, page):
        _kept_page_for_offline(page)
        _unused_for_two_days(page, elena.id)  # the phone's reckoning only: the server's session is as fresh as ever
        context.set_offline(True)
        page.goto("/mi")
        expect(page.locator("#sesion")).to_be_visible()
        expect(page.locator("#mi-efectivo")).to_have_text("Sesión caducada: sus datos no se muestran hasta que vuelva a entrar.")
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#sesion")).to_be_hidden(timeout=10_000)
        expect(page.locator("#mi-efectivo")).to_contain_text("Agente Elena")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)


def test_the_page_a_login_lands_on_is_waited_for_not_replaced_by_the_last_officers_copy(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """On a slow link the service worker showed its kept copy 4 s into any load of /mi: after Eduardo's login that
    was Elena's page, her tareas on screen, instead of the page drawn for him."""
    elena = build.usuario(1, nombre="Elena", apellido="Campo")
    build.efectivo(usuario_id=elena.id, nombre="Agente Elena", lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC))
    eduardo = _officer(build, "Eduardo")
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi") as (context, page):
        _kept_page_for_offline(page)
        page.goto("/login?next=/mi")  # Elena's session still open: Eduardo's login replaces it

        def slowly(route: Any) -> None:
            page.wait_for_timeout(6000)
            route.continue_()

        context.route("**/mi", slowly)
        page.get_by_label("Correo electrónico").fill(eduardo.email)
        page.get_by_label("Contraseña").fill(PASSWORD)
        page.get_by_role("button", name="Entrar").click()
        page.wait_for_url("**/mi")
        expect(page.locator("#mi-efectivo")).to_contain_text("Agente Eduardo", timeout=15_000)
        assert "Agente Elena" not in page.locator("#mi-efectivo").inner_text()
        context.unroute("**/mi")


def test_an_sos_is_not_held_back_by_an_earlier_request_that_hangs(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Only the availability's request hung: given up, it stayed first in line and ended every round of the outbox, and
    the SOS tapped after it was never sent while every other request went through."""
    sup = build.usuario(2)
    rosa = _officer(build, "Rosa")
    with logged_in(browser, pw, server.url, rosa.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        hung: list[Any] = []
        page.route("**/api/v1/efectivos/*/disponibilidad", lambda route: hung.append(route))  # only this one hangs
        page.get_by_role("button", name="No disponible").click()
        page.locator("#sos").click()
        expect(page.locator("#sos-resultado")).to_contain_text("SOS EMG-", timeout=25_000)  # sent, and who is coming said
        assert len(_emergencies(server, build, sup)) == 1
        expect(page.locator("#cola-resumen")).to_contain_text("1 acción")  # the availability still waits, not dropped


def test_a_logout_while_the_pages_answer_is_on_its_way_leaves_no_copy_behind(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The copy shown after 4 s on a hung link, then "Cerrar sesión": the server's late answer for the page re-made the
    service worker's cache the logout had deleted, holding the officer's page and none of its files."""
    elena = build.usuario(1, nombre="Elena", apellido="Campo")
    build.efectivo(usuario_id=elena.id, nombre="Agente Elena", lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC))
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi") as (context, page):
        _kept_page_for_offline(page)
        held: list[Any] = []
        context.route("**/mi", lambda route: held.append(route))
        page.goto("/mi", wait_until="commit", timeout=20_000)
        expect(page.locator("#mi-efectivo")).to_contain_text("Agente Elena", timeout=10_000)  # the copy, after 4 s
        answer = held[0].fetch()  # drawn while her session stood, delivered after her logout
        page.get_by_role("button", name="Cerrar sesión").click()
        page.wait_for_url("**/login")
        page.wait_for_function("() => localStorage.length === 0", timeout=5000)
        held[0].fulfill(response=answer)
        page.wait_for_timeout(1500)
        context.unroute("**/mi")
        assert page.evaluate("async () => (await caches.keys()).length") == 0


def test_the_next_officers_pages_drop_the_copy_of_a_session_ended_elsewhere(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Elena's session was ended from another device, so Eduardo's login named nobody to forget: her kept /mi stayed,
    and on a slow link /mi showed him her tareas."""
    elena = build.usuario(1, nombre="Elena", apellido="Campo")
    build.efectivo(usuario_id=elena.id, nombre="Agente Elena", lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC))
    eduardo = _officer(build, "Eduardo")
    kept_for = "async () => { const kept = await caches.match('/mi'); return kept && /data-usuario-id=\"(\\d+)\"/.exec(await kept.text())[1]; }"
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi") as (_, page):
        _kept_page_for_offline(page)
        page.goto("/static/css/app.css")  # she leaves the page
        assert _api(server, build, elena, "POST", "/api/v1/auth/logout-all").status_code == 204  # ended elsewhere
        assert page.evaluate(kept_for) == str(elena.id)
        _log_in(page, eduardo.email, "/tareas")  # Eduardo's first page is not /mi
        for _ in range(50):
            if page.evaluate(kept_for) != str(elena.id):
                break
            page.wait_for_timeout(100)
        assert page.evaluate(kept_for) is None


def test_a_page_whose_session_ended_shows_nothing_of_its_officer_and_asks_nothing_in_their_name(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Elena's tab stayed open while Eduardo logged in in another: it said "caducada" but kept her tareas on screen;
    and a page left open without coverage past the session's end kept its question, which anyone could then answer
    in her name."""
    sup = build.usuario(2)
    elena = build.usuario(1, nombre="Elena", apellido="Campo")
    suyo = build.efectivo(usuario_id=elena.id, nombre="Agente Elena", lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC))
    eduardo = _officer(build, "Eduardo")
    tarea = build.tarea(sup, titulo="Escolta reservada", descripcion="Datos reservados de Elena")
    with logged_in(browser, pw, server.url, elena.email, PASSWORD, "movil", landing="/mi", service_workers="block") as (context, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [suyo.id]}).status_code == 200
        expect(page.locator("#alerta-texto")).to_contain_text(tarea.codigo, timeout=10_000)
        expect(page.locator("#actuales")).to_contain_text("Datos reservados de Elena")
        context.set_offline(True)
        page.evaluate(  # the session's whole lifetime runs out while the page is open without coverage
            "(key) => { const l = JSON.parse(localStorage.getItem(key)); localStorage.setItem(key, JSON.stringify({ ...l, expira: Date.now() - 1000 })); }",
            f"gad:sesion:{elena.id}",
        )
        expect(page.locator("#sesion")).to_be_visible(timeout=20_000)  # judged at the page's next 15 s round
        expect(page.locator("#alerta")).to_be_hidden()
        expect(page.locator("#actuales")).not_to_contain_text("Datos reservados de Elena")
        context.set_offline(False)
        page.reload()  # her session stands on the server: the page is hers again
        expect(page.locator("#actuales")).to_contain_text("Datos reservados de Elena", timeout=10_000)

        other = context.new_page()
        _log_in(other, eduardo.email, "/mi")  # replaces her session
        expect(other.locator("#mi-efectivo")).to_contain_text("Agente Eduardo")
        expect(page.locator("#sesion")).to_be_visible(timeout=20_000)
        expect(page.locator("#actuales")).not_to_contain_text("Datos reservados de Elena")
        expect(page.locator("#alerta")).to_be_hidden()
