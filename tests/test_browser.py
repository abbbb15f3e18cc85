"""Operators and field staff doing the whole job from a browser: Playwright in Chromium, desktop and phone, real gunicorn."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, Playwright, WebSocketRoute, expect

from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer
from tests.support.browser import RELEASE_NOTICE, SIZES, Held, axe_violations, context_options, logged_in, server_without_tiles_fixture, shot

pytestmark = pytest.mark.slow
MARKUP = '<img src=x class=pwn><a class=pwn href="#x">a</a><b class=pwn>b</b>'


server = server_without_tiles_fixture("server")


def _no_injected_elements(page: Page, where: str) -> None:
    expect(page.locator(".pwn"), f"markup from stored text became elements on {where}").to_have_count(0)


def _hover_map_markers(page: Page) -> None:
    """Tooltips are built when a marker is hovered: open every one so its content is in the DOM."""
    markers = page.locator("#mapa .leaflet-interactive")
    for index in range(markers.count()):
        markers.nth(index).hover(force=True)
        expect(page.locator(".leaflet-tooltip")).to_have_count(1)
        _no_injected_elements(page, f"map tooltip {index}")


@pytest.mark.parametrize("size", SIZES)
def test_stored_markup_in_every_free_text_field_never_becomes_elements(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders, tmp_path: Path, size: str
) -> None:
    admin = build.usuario(3, nombre=MARKUP, apellido=MARKUP, telefono=MARKUP[:30])
    officer = build.usuario(1, nombre=MARKUP, apellido=MARKUP)
    efectivo = build.efectivo(usuario_id=officer.id, nombre=MARKUP, rango=MARKUP[:50], unidad=MARKUP, especialidad=MARKUP, lat=40.4169, lon=-3.7035)
    build.efectivo(codigo_interno="<b class=pwn>X", nombre=MARKUP, lat=40.42, lon=-3.70)
    tarea = build.tarea(admin, titulo=MARKUP, descripcion=MARKUP, ubicacion_descripcion=MARKUP, notas=MARKUP, ubicacion_lat=40.417, ubicacion_lon=-3.703)
    build.asignacion(tarea, efectivo)
    dialogs: list[str] = []
    with logged_in(browser, pw, server.url, admin.email, PASSWORD, size) as (_, page):
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        for path in ("/", f"/tareas/{tarea.id}", "/efectivos", "/usuarios", "/mapa", "/tareas/nueva"):
            page.goto(path)
            page.wait_for_load_state("networkidle")
            if page.locator("#mapa").count():
                _hover_map_markers(page)
            _no_injected_elements(page, path)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, size) as (_, page):
        for path in ("/", f"/tareas/{tarea.id}"):
            page.goto(path)
            page.wait_for_load_state("networkidle")
            _no_injected_elements(page, path + " (efectivo)")
    assert dialogs == []


# --- smoke: every page at both sizes, no script error, axe-core clean, screenshots ---------------------------


def _errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


PAGES = {
    "tablero": "/",
    "tareas": "/tareas",
    "tarea": "/tareas/{tarea}",
    "tarea-nueva": "/tareas/nueva",
    "efectivos": "/efectivos",
    "usuarios": "/usuarios",
    "mapa": "/mapa",
    "mi": "/mi",
}


@pytest.mark.parametrize("size", SIZES)
def test_every_page_loads_without_errors_passes_axe_and_is_photographed(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str
) -> None:
    admin = build.usuario(3)
    build.efectivo(usuario_id=admin.id, nombre="Agente Administradora", lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC))
    build.efectivo(nombre="Agente Antiguo", lat=40.42, lon=-3.71, posicion_en=datetime.now(UTC) - timedelta(hours=2))
    tarea = build.tarea(admin, titulo="Vigilancia del puerto", ubicacion_lat=40.417, ubicacion_lon=-3.703)
    with logged_in(browser, pw, server.url, admin.email, PASSWORD, size) as (_, page):
        errors = _errors(page)
        for name, path in PAGES.items():
            page.goto(path.format(tarea=tarea.id))
            page.wait_for_load_state("networkidle")
            assert errors == [], f"{path}: {errors}"
            violations = axe_violations(page)
            assert violations == [], f"{path}: {violations}"
            shot(page, name, size)
    login = browser.new_context(**context_options(pw, size, server.url))
    try:
        page = login.new_page()
        page.goto("/login")
        assert axe_violations(page) == []
        shot(page, "login", size)
    finally:
        login.close()


# --- operators: raise an emergency, see who goes; the officer's phone gets it and answers --------------------


def _api(server: LiveServer, build: Builders, who, method: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
    import requests

    return requests.request(method, server.url + path, headers=build.headers(who, **kwargs.pop("headers", {})), timeout=30, **kwargs)


@pytest.mark.parametrize("size", SIZES)
def test_operator_raises_emergency_officer_phone_gets_it_and_the_board_shows_the_answer(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str
) -> None:
    sup = build.usuario(2)
    officer = build.usuario(1, nombre="Elena", apellido="Campo")
    build.efectivo(usuario_id=officer.id, nombre="Agente Elena", lat=40.4175, lon=-3.7035, posicion_en=datetime.now(UTC))
    with (
        logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (_, phone),
        logged_in(browser, pw, server.url, sup.email, PASSWORD, size) as (_, board),
    ):
        expect(phone.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(board.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        if size == "escritorio":
            board.keyboard.press("Alt+e")
            expect(board.get_by_role("group").or_(board.locator("#dialogo-emergencia"))).to_be_visible()
            board.get_by_role("button", name="Usar mi posición").click()
            expect(board.get_by_label("Latitud")).to_have_value("40.416900")
        else:
            board.locator("#mapa").click(position={"x": 150, "y": 150})
            expect(board.locator("#dialogo-emergencia")).to_be_visible()
            board.get_by_label("Latitud").fill("40.4169")
            board.get_by_label("Longitud").fill("-3.7035")
        board.get_by_label("Descripción").fill("Pelea en la plaza")
        board.get_by_role("button", name="Lanzar emergencia").click()
        result = board.locator("#emg-resultado")
        expect(result).to_contain_text(re.compile(r"Agente Elena va en camino — a \d+ m"), timeout=5_000)
        codigo = result.locator("a").inner_text()
        # The officer's phone shows the assignment within 2 s of the operator's click.
        expect(phone.locator("#alerta")).to_be_visible(timeout=2_000)
        expect(phone.locator("#alerta-texto")).to_contain_text(codigo)
        expect(board.locator(f'.lista-emergencias .emergencia:has-text("{codigo}")')).to_have_class(re.compile("nueva"))
        shot(phone, "mi-alerta", "movil")
        phone.get_by_role("button", name="Acepto").click()
        expect(phone.locator("#alerta-estado")).to_contain_text("enviada", timeout=5_000)
        expect(board.locator('.lista-emergencias [data-respuesta="acepto"], #emergencias [data-marca="aceptada"]').first).to_contain_text(
            re.compile("acepta", re.I), timeout=5_000
        )
        shot(board, "tablero-emergencia-aceptada", size)


@pytest.mark.parametrize("size", SIZES)
def test_nobody_free_says_why_and_lets_the_operator_assign_by_hand(browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str) -> None:
    sup = build.usuario(2)
    stale = build.efectivo(nombre="Agente Dormido", lat=40.4172, lon=-3.7035, posicion_en=datetime.now(UTC) - timedelta(hours=1))
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, size) as (_, board):
        board.get_by_role("button", name="Nueva emergencia").click()
        board.get_by_label("Latitud").fill("40,4169")
        board.get_by_label("Longitud").fill("-3.7035")
        board.get_by_role("button", name="Lanzar emergencia").click()
        expect(board.locator("#emg-resultado")).to_contain_text("Nadie libre: ninguna posición en los últimos 15 min")
        board.get_by_role("button", name="Asignar Agente Dormido").click()
        expect(board.locator("#emg-resultado")).to_contain_text("Agente Dormido asignado")
        tarea_id = int(board.locator("#emg-resultado a").get_attribute("href").rsplit("/", 1)[1])  # type: ignore[union-attr]
        assert [e["efectivo_id"] for e in _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea_id}").json()["efectivos"]] == [stale.id]
        # Launched, the form is empty: pressing the button again (to be sure) raises no second emergency.
        expect(board.get_by_label("Latitud")).to_have_value("")
        board.get_by_role("button", name="Lanzar emergencia").click()
        expect(board.locator("#form-emergencia-error-lat")).to_contain_text("Indique dónde")
        assert _api(server, build, sup, "GET", "/api/v1/tasks?q=EMG-").json()["total"] == 1


@pytest.mark.parametrize("size", SIZES)
def test_emergency_form_shows_spanish_errors_next_to_the_coordinates(browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str) -> None:
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, size) as (_, board):
        board.get_by_role("button", name="Nueva emergencia").click()
        board.get_by_label("Latitud").fill("95")
        board.get_by_label("Longitud").fill("-3.7")
        board.get_by_role("button", name="Lanzar emergencia").click()
        expect(board.locator("#form-emergencia-error-lat")).to_have_text("Latitud entre -90 y 90.")
        expect(board.get_by_label("Latitud")).to_have_attribute("aria-invalid", "true")
        board.get_by_label("Latitud").fill("40.4")
        board.get_by_label("Longitud").fill("")
        board.get_by_role("button", name="Lanzar emergencia").click()
        expect(board.locator("#form-emergencia-error-lng")).to_have_text("Latitud y longitud van juntas: indique las dos.")
        # Neither: the API would place it at the operator's own last position; the board asks where instead.
        board.get_by_label("Latitud").fill("")
        board.get_by_role("button", name="Lanzar emergencia").click()
        expect(board.locator("#form-emergencia-error-lat")).to_contain_text("Indique dónde")
        expect(board.locator("#form-emergencia-error-lng")).to_contain_text("Indique dónde")
        board.keyboard.press("Escape")
        expect(board.locator("#dialogo-emergencia")).to_be_hidden()
        expect(board.get_by_role("button", name="Nueva emergencia")).to_be_focused()


# --- the field officer's phone page ---------------------------------------------------------------------------


def _officer(build: Builders, **efectivo: object):  # type: ignore[no-untyped-def]
    officer = build.usuario(1, nombre="Elena", apellido="Campo")
    values = {"usuario_id": officer.id, "nombre": "Agente Elena"} | efectivo
    return officer, build.efectivo(**values)


def test_fixes_refused_after_the_efectivo_was_deactivated_are_said_once_not_listed_as_conflicts(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """A deactivated efectivo's position is refused (409). A phone back from a shift without coverage holds up to 200
    fixes: each refusal became a conflict the officer had to dismiss one by one."""
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (context, page):
        expect(page.locator("#posicion-estado")).to_contain_text("la central la tiene de hace", timeout=10_000)
        context.set_offline(True)
        assert _api(server, build, sup, "DELETE", f"/api/v1/efectivos/{efectivo.id}").status_code == 204
        fixes = [
            {
                "key": f"fix-{n}",
                "method": "PUT",
                "path": f"/api/v1/efectivos/{efectivo.id}/ubicacion",
                "body": {"lat": 40.417 + n / 1000, "lng": -3.7035, "registrado_en": datetime.now(UTC).isoformat()},
                "label": "Posición",
                "kind": "posicion",
                "created": datetime.now(UTC).isoformat(),
            }
            for n in range(5)
        ]
        page.evaluate("([key, fixes]) => localStorage.setItem(key, JSON.stringify(fixes))", [f"gad:mi:cola:{officer.id}", fixes])
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=10_000)
        expect(page.locator("#posicion-estado")).to_contain_text("la central no la acepta: El efectivo está dado de baja.")
        expect(page.locator("#conflictos li")).to_have_count(0)
    seen = _api(server, build, sup, "GET", f"/api/v1/efectivos/{efectivo.id}").json()
    assert (seen["lat"], seen["lng"]) == (40.4169, -3.7035)  # none of them moved the efectivo


@pytest.mark.parametrize("size", SIZES)
def test_officer_runs_a_tarea_sets_availability_and_shares_position_from_the_phone(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str
) -> None:
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    tarea = build.tarea(sup, titulo="Patrulla del mercado", tipo="patrullaje")
    build.asignacion(tarea, efectivo)
    before = datetime.now(UTC)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, size, landing="/mi") as (_, page):
        card = page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')
        expect(card).to_contain_text("Patrulla del mercado")
        # Geolocation is granted at Puerta del Sol: the fix reaches the server with the time it was taken.
        expect(page.locator("#posicion-estado")).to_contain_text("la central la tiene de hace", timeout=10_000)
        seen = _api(server, build, sup, "GET", f"/api/v1/efectivos/{efectivo.id}").json()
        assert (seen["lat"], seen["lng"]) == (40.4169, -3.7035)
        assert datetime.fromisoformat(seen["posicion_en"]) >= before - timedelta(seconds=5)
        card.get_by_role("button", name="Iniciar").click()
        expect(card.get_by_role("button", name="Pausar")).to_be_visible()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        card.get_by_label("Motivo (opcional)").fill("Descanso de 10 minutos")
        card.get_by_role("button", name="Pausar").click()
        expect(page.locator(f'#actuales [data-tarea-id="{tarea.id}"][data-estado="pausada"]')).to_be_visible()
        page.locator(f'#actuales [data-tarea-id="{tarea.id}"]').get_by_role("button", name="Reanudar").click()
        expect(page.locator(f'#actuales [data-tarea-id="{tarea.id}"][data-estado="en_curso"]')).to_be_visible()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        page.locator(f'#actuales [data-tarea-id="{tarea.id}"]').get_by_role("button", name="Finalizar").click()
        expect(page.locator("#historial")).to_contain_text("Patrulla del mercado · Finalizada")
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        historial = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}/historial").json()
        assert [h["estado_nuevo"] for h in historial] == ["en_curso", "pausada", "en_curso", "finalizada"]
        assert historial[1]["motivo"] == "Descanso de 10 minutos"
        page.get_by_role("button", name="No disponible").click()
        expect(page.get_by_role("button", name="No disponible")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        assert _api(server, build, sup, "GET", f"/api/v1/efectivos/{efectivo.id}").json()["estado_disponibilidad"] == "no_disponible"
        shot(page, "mi-servicio", size)


def test_officer_taken_off_a_tarea_sees_it_leave_the_phone_at_once_and_is_told(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The tarea's own frames stop at the release (they may no longer read it); the desasignacion notification
    makes the phone drop the card and the pending acceptance, say so, and mark the notice read when seen."""
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    tarea = build.tarea(sup, titulo="Vigilancia del puerto", tipo="vigilancia")
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (_, page):
        errors = _errors(page)
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [efectivo.id]}).status_code == 200
        card = page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')
        expect(card).to_contain_text("Vigilancia del puerto")
        expect(page.locator("#alerta")).to_be_visible()  # asked to accept; the officer has not answered yet
        assert _api(server, build, sup, "DELETE", f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}").status_code == 200
        expect(card).to_have_count(0, timeout=5_000)
        expect(page.locator("#alerta")).to_be_hidden()
        aviso = page.get_by_role("alert", name=RELEASE_NOTICE)
        expect(aviso).to_contain_text(f"Desasignado: {tarea.codigo}")
        expect(page.locator("#actuales")).to_contain_text("No tiene tareas abiertas.")
        shot(page, "mi-desasignada", "movil")
        aviso.get_by_role("button", name="Entendido").click()
        expect(aviso).to_be_hidden()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        [notificacion] = _api(server, build, officer, "GET", "/api/v1/notificaciones?causa=desasignacion").json()["items"]
        assert (notificacion["tarea_id"], notificacion["estado"]) == (tarea.id, "leida")
        # Three releases before anyone looks: all three are shown; one read on another device leaves the notice;
        # "Entendido" marks the other two read.
        otras = [build.tarea(sup, titulo=f"Ronda {n}", tipo="vigilancia") for n in range(3)]
        for otra in otras:  # one at a time: an efectivo is not booked on overlapping tareas
            assert _api(server, build, sup, "POST", f"/api/v1/tasks/{otra.id}/efectivos", json={"efectivo_ids": [efectivo.id]}).status_code == 200
            assert _api(server, build, sup, "DELETE", f"/api/v1/tasks/{otra.id}/efectivos/{efectivo.id}").status_code == 200
        for otra in otras:
            expect(aviso).to_contain_text(f"Desasignado: {otra.codigo}")
        page.reload()  # not acknowledged yet: the notice outlives a reload (the ledger, not the stream, says so)
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        for otra in otras:
            expect(aviso).to_contain_text(f"Desasignado: {otra.codigo}")
        todas = _api(server, build, officer, "GET", "/api/v1/notificaciones?causa=desasignacion").json()["items"]
        leida_fuera = next(n for n in todas if n["tarea_id"] == otras[0].id)
        assert _api(server, build, officer, "POST", f"/api/v1/notificaciones/{leida_fuera['id']}/ack", json={"respuesta": "leida"}).status_code == 200
        expect(aviso).not_to_contain_text(f"Desasignado: {otras[0].codigo}")
        expect(aviso).to_contain_text(f"Desasignado: {otras[2].codigo}")
        aviso.get_by_role("button", name="Entendido").click()
        expect(aviso).to_be_hidden()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        estados = {n["tarea_id"]: n["estado"] for n in _api(server, build, officer, "GET", "/api/v1/notificaciones?causa=desasignacion").json()["items"]}
        assert estados == {tarea.id: "leida"} | {otra.id: "leida" for otra in otras}
        assert errors == []


def test_an_alert_closed_while_the_phone_asks_it_is_taken_off_with_the_reason(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The phone kept asking an alert's question after the central closed it, and the answer was then refused (409).
    The closing now reaches the recipient's phone: the question says why it goes, and its buttons no longer answer."""
    sup = build.usuario(2)
    officer, _ = _officer(build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (_, page):
        errors = _errors(page)
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        body = {"tipo": "evacuacion", "texto": "Desalojen la estación de Sol", "destino": "usuarios", "usuario_ids": [officer.id]}
        alerta = _api(server, build, sup, "POST", "/api/v1/alertas", json=body)
        assert alerta.status_code == 201, alerta.text
        pregunta = page.get_by_role("alertdialog", name="Alerta de la central")
        expect(pregunta).to_contain_text("Desalojen la estación de Sol")
        assert _api(server, build, sup, "POST", f"/api/v1/alertas/{alerta.json()['id']}/cerrar").status_code == 200
        expect(page.locator("#alerta-estado")).to_have_text("La central cerró esta alerta: ya no espera respuesta.")
        expect(page.locator("#acepto")).to_be_disabled()
        expect(pregunta).to_be_hidden(timeout=10_000)
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        page.wait_for_timeout(500)
        expect(page.locator("#alerta")).to_be_hidden()  # the ledger no longer lists it either
        assert errors == []


def test_a_motivo_typed_in_the_tray_survives_other_actions_going_through_the_outbox(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The tray redrew its list whenever the phone's outbox changed, and the outbox changes with every position fix
    and every action sent: a motivo half typed for "No puedo" was wiped while the officer typed it."""
    sup = build.usuario(2)
    officer, _ = _officer(build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "escritorio", landing="/mi") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        body = {"tipo": "refuerzos", "texto": "Refuerzos en la plaza de Sol", "destino": "usuarios", "usuario_ids": [officer.id]}
        assert _api(server, build, sup, "POST", "/api/v1/alertas", json=body).status_code == 201
        expect(page.get_by_role("alertdialog", name="Alerta de la central")).to_contain_text("Refuerzos en la plaza de Sol")
        page.get_by_role("button", name="Notificaciones").click()
        motivo = page.locator(".notificacion").filter(has_text="Refuerzos en la plaza de Sol").get_by_role("textbox", name="Motivo")
        motivo.fill("Rueda pinch")
        # Something else goes through the outbox meanwhile: queued, then sent and taken out of it.
        page.get_by_role("button", name="No disponible").click()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=10_000)
        if not page.locator("#bandeja-panel").is_visible():
            page.get_by_role("button", name="Notificaciones").click()
        expect(motivo).to_have_value("Rueda pinch")


def test_an_answer_from_the_tray_without_coverage_waits_in_the_outbox_and_is_sent_when_back(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """On the phone page the tray answered straight to the server: without coverage the answer failed and was gone.
    It now goes through the page's outbox, like the question panel's answers; each of the two shows what the other
    queued, so neither takes a second answer to one question."""
    sup = build.usuario(2)
    officer, _ = _officer(build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (context, page):
        errors = _errors(page)
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        page.evaluate("navigator.serviceWorker.ready")
        for texto in ("Refuerzos en la plaza de Sol", "Corte de tráfico en Atocha"):
            body = {"tipo": "refuerzos", "texto": texto, "destino": "usuarios", "usuario_ids": [officer.id]}
            assert _api(server, build, sup, "POST", "/api/v1/alertas", json=body).status_code == 201
        pregunta = page.get_by_role("alertdialog", name="Alerta de la central")
        expect(pregunta).to_contain_text("Refuerzos en la plaza de Sol")  # the older first
        page.get_by_role("button", name="Notificaciones").click()
        sol = page.locator(".notificacion").filter(has_text="Refuerzos en la plaza de Sol")
        atocha = page.locator(".notificacion").filter(has_text="Corte de tráfico en Atocha")
        expect(atocha.get_by_role("button", name="Acepto")).to_be_visible()
        context.set_offline(True)
        atocha.get_by_role("button", name="No puedo").click()
        expect(atocha).to_contain_text("No puedo (sin enviar aún): se enviará en cuanto haya cobertura.")
        expect(atocha.get_by_role("button")).to_have_count(0)
        # The panel answers Sol into the outbox: the tray no longer offers to answer it again.
        page.locator("#acepto").click()
        expect(sol).to_contain_text("Acepto (sin enviar aún)")
        expect(sol.get_by_role("button")).to_have_count(0)
        expect(pregunta).to_be_hidden(timeout=5_000)  # and the panel does not go on to ask Atocha, answered in the tray
        expect(page.locator("#cola-resumen")).to_contain_text("2 acciones")
        # Reopened without coverage, the tray shows its last list, and what waits to be sent, from its kept copy.
        page.reload()
        expect(page.locator("#red")).to_contain_text("Sin cobertura")
        page.get_by_role("button", name="Notificaciones").click()
        expect(sol).to_contain_text("Acepto (sin enviar aún)")
        expect(atocha).to_contain_text("No puedo (sin enviar aún)")
        expect(page.locator("#bandeja-lista .notificacion button")).to_have_count(0)
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=10_000)
        expect(sol).to_have_attribute("data-estado", "aceptada", timeout=10_000)
        expect(atocha).to_have_attribute("data-estado", "rechazada", timeout=10_000)
        answers = {n["texto"]: n["respuesta"] for n in _api(server, build, officer, "GET", "/api/v1/notificaciones?causa=alerta").json()["items"]}
        assert answers == {"Refuerzos en la plaza de Sol": "acepto", "Corte de tráfico en Atocha": "no_puedo"}
        expect(pregunta).to_be_hidden()
        assert errors == []


def _past_the_trays_wait(page: Page, held: list) -> None:
    """Once the page's data request is held back, the clock past the 15 s the tray gives the page's own socket: the
    tray opens its own."""
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while not held:
        assert datetime.now(UTC) < deadline
        page.wait_for_timeout(50)
    page.clock.fast_forward(16_000)
    expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)  # the tray's own


def test_a_page_whose_socket_comes_up_late_leaves_the_tray_without_a_second_one(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """A live page whose data takes over 15 s: the tray opens its own socket meanwhile, and closes it for good once
    the page's socket is up (it stayed open, a second connection and every frame twice, for the page's life)."""
    sup = build.usuario(2)
    build.efectivo(nombre="Agente Tardío")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, landing="/usuarios") as (_, page):
        errors = _errors(page)
        held: list = []
        sockets: list = []
        page.route(re.compile(r"/api/v1/efectivos\?"), lambda route: held.append(route))  # the page's data, held back
        page.clock.install()
        page.on("websocket", lambda socket: sockets.append(socket))
        page.goto("/efectivos", wait_until="commit")
        page.wait_for_function("document.body !== null && document.getElementById('bandeja-boton') !== null")
        _past_the_trays_wait(page, held)
        assert len(sockets) == 1
        for route in held:
            route.continue_()
        page.unroute(re.compile(r"/api/v1/efectivos\?"))
        expect(page.locator("#efectivos tr[data-efectivo-id]")).to_contain_text("Agente Tardío", timeout=10_000)
        page.wait_for_timeout(500)
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not (len(sockets) == 2 and sockets[0].is_closed()):
            assert datetime.now(UTC) < deadline, [(s.url, s.is_closed()) for s in sockets]
            page.wait_for_timeout(100)
        page.wait_for_timeout(1_500)  # not reopened
        assert [s.is_closed() for s in sockets] == [True, False]
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado")
        assert errors == []


def test_the_trays_socket_closed_while_it_waits_to_reconnect_stays_closed(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The tray's own socket dropped, and the page's socket came up while the tray waited to reconnect: closing the
    tray's socket then did not cancel the wait, and the tray opened a second socket beside the page's after all."""
    sup = build.usuario(2)
    build.efectivo(nombre="Agente Tardío")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, landing="/usuarios") as (_, page):
        errors = _errors(page)
        held: list = []
        sockets: list[WebSocketRoute] = []

        def through(ws: WebSocketRoute) -> None:
            sockets.append(ws)
            ws.connect_to_server()

        page.route(re.compile(r"/api/v1/efectivos\?"), lambda route: held.append(route))  # the page's data, held back
        page.route_web_socket(re.compile(r"/ws/connect"), through)
        page.clock.install()
        page.goto("/efectivos", wait_until="commit")
        _past_the_trays_wait(page, held)
        assert len(sockets) == 1
        page.clock.pause_at(datetime.now(UTC) + timedelta(hours=1))  # the reconnect's wait does not run out by itself
        sockets[0].close()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "desconectado", timeout=10_000)
        for route in held:
            route.continue_()
        page.unroute(re.compile(r"/api/v1/efectivos\?"))
        expect(page.locator("#efectivos tr[data-efectivo-id]")).to_contain_text("Agente Tardío", timeout=10_000)
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)  # the page's
        assert len(sockets) == 2
        page.clock.run_for(30_000)  # well past the tray's reconnect delay
        page.wait_for_timeout(1_000)
        assert len(sockets) == 2, "the tray reopened its socket beside the page's"
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado")
        assert errors == []


def test_release_notice_to_a_delegado_is_not_headed_as_if_they_lost_the_tarea(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """A delegado taken off as efectivo keeps the tarea, and their notice says so; its heading said "Ya no tiene
    esta tarea" all the same, and the same singular heading stood over several notices."""
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    suya = build.tarea(sup, titulo="Vigilancia del puerto", tipo="vigilancia", delegado_usuario_id=officer.id)
    ajena = build.tarea(sup, titulo="Ronda del mercado", tipo="vigilancia")

    def release(tarea) -> None:  # type: ignore[no-untyped-def]
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [efectivo.id]}).status_code == 200
        assert _api(server, build, sup, "DELETE", f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}").status_code == 200

    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (_, page):
        errors = _errors(page)
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        release(suya)
        expect(page.locator("#desasignada-texto")).to_contain_text("sigue siendo su delegado")
        expect(page.locator("#desasignada-titulo")).to_have_text("Asignación retirada")
        aviso = page.get_by_role("alert", name=RELEASE_NOTICE)
        release(ajena)  # both kinds at once: one heading true of both
        expect(aviso).to_contain_text("no acuda")
        expect(page.locator("#desasignada-titulo")).to_have_text("2 asignaciones retiradas")
        page.reload()  # the same from the ledger
        expect(page.locator("#desasignada-titulo")).to_have_text("2 asignaciones retiradas")
        expect(aviso).to_contain_text("sigue siendo su delegado")
        aviso.get_by_role("button", name="Entendido").click()
        expect(aviso).to_be_hidden()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        assert errors == []


# Records each question #alerta shows (its text when it appears or changes), to see what was ever on screen.
ASKED = """
window.__asked = [];
new MutationObserver(() => {
  const box = document.getElementById("alerta");
  const text = box && !box.hidden ? document.getElementById("alerta-texto").textContent : null;
  if (text && text !== window.__asked.at(-1)) window.__asked.push(text);
}).observe(document, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["hidden"] });
"""


def test_officer_released_more_times_than_one_page_holds_is_told_of_every_release(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The phone read the 50 newest unread releases: of 55, the five oldest were never shown, nor marked read."""
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    otras = [build.tarea(sup, titulo=f"Ronda {n}", tipo="vigilancia") for n in range(55)]
    for otra in otras:  # one at a time: an efectivo is not booked on overlapping tareas
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{otra.id}/efectivos", json={"efectivo_ids": [efectivo.id]}).status_code == 200
        assert _api(server, build, sup, "DELETE", f"/api/v1/tasks/{otra.id}/efectivos/{efectivo.id}").status_code == 200
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (_, page):
        aviso = page.get_by_role("alert", name=RELEASE_NOTICE)
        for otra in (otras[0], otras[-1]):
            expect(aviso).to_contain_text(f"Desasignado: {otra.codigo}.")
        aviso.get_by_role("button", name="Entendido").click()
        expect(aviso).to_be_hidden()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=20_000)
    unread = _api(server, build, officer, "GET", "/api/v1/notificaciones?causa=desasignacion&no_leidas=true").json()
    assert unread["total"] == 0


def test_officer_is_asked_again_after_a_reload_about_every_assignment_not_yet_answered(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """A question waits in the ledger, not in the page: closing, reopening or reloading the phone page asks again
    every assignment not yet answered, one at a time (emergencies first, then by prioridad), never one answered on
    another device or one whose tarea the officer was taken off meanwhile, and never the same one twice."""
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    now = datetime.now(UTC)
    leve, urgente, quitada, auxilio = (
        build.tarea(
            sup,
            titulo=titulo,
            prioridad=prioridad,
            es_emergencia=emergencia,
            inicio_programado=now + (1 + 4 * n) * timedelta(hours=1),
            fin_programado=now + (3 + 4 * n) * timedelta(hours=1),
        )
        for n, (titulo, prioridad, emergencia) in enumerate(
            [("Ronda del parque", 2, False), ("Custodia en el juzgado", 4, False), ("Control de accesos", 5, True), ("Auxilio en la estación", 3, True)]
        )
    )

    def assign(tarea) -> None:  # type: ignore[no-untyped-def]
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [efectivo.id]}).status_code == 200

    def ledger() -> dict[int, dict]:  # type: ignore[type-arg]
        items = _api(server, build, officer, "GET", "/api/v1/notificaciones?causa=asignacion,emergencia").json()["items"]
        return {n["tarea_id"]: n for n in items}

    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (_, page):
        errors = _errors(page)
        alerta, texto, despues = page.locator("#alerta"), page.locator("#alerta-texto"), page.locator("#alerta-cola")
        page.add_init_script(ASKED)  # from the next load on: every question this page puts on screen, in order
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        # Two assignments in a row: the question on screen stays, with the reason being typed, and the more urgent
        # one waits first in line (each asked once: the task_assigned frame's prompt yields to the notification's).
        assign(leve)
        expect(texto).to_contain_text(leve.codigo)
        page.get_by_label("Motivo si no puede (opcional)").fill("Estoy en otra")
        assign(urgente)
        expect(despues).to_have_text("Después: 1 pregunta(s) más.")
        expect(texto).to_contain_text(f"Nueva asignación: {leve.codigo}")
        expect(page.get_by_label("Motivo si no puede (opcional)")).to_have_value("Estoy en otra")
        # The phone leaves the page; meanwhile a tarea is assigned and taken off again, and an emergency assigned.
        page.goto("about:blank")
        assign(quitada)
        assert _api(server, build, sup, "DELETE", f"/api/v1/tasks/{quitada.id}/efectivos/{efectivo.id}").status_code == 200
        assign(auxilio)
        # Back on the page (a resume replays what it missed; the ledger decides what is still asked): the emergency
        # first, then by prioridad; the tarea taken off is not asked.
        reads: list[str] = []
        page.on("requestfinished", lambda request: reads.append(request.url) if "pendientes=true" in request.url else None)
        page.goto("/mi")
        expect(page.get_by_role("alert", name=RELEASE_NOTICE)).to_contain_text(quitada.codigo)
        expect(texto).to_contain_text(f"Emergencia: {auxilio.codigo}")
        expect(despues).to_have_text("Después: 2 pregunta(s) más.")
        # The first read of the ledger is the load's, before the socket; a second one follows the replayed frames.
        for _ in range(100):
            if len(reads) >= 2:
                break
            page.wait_for_timeout(100)
        assert len(reads) >= 2, reads
        page.wait_for_timeout(200)
        # Never the released one, not even for a moment while its replayed frames arrived; the emergency once.
        assert [quitada.codigo in t for t in page.evaluate("window.__asked")] == [False]
        page.reload()  # a fresh load and a resume with nothing to replay: the same questions, each once
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(texto).to_contain_text(f"Emergencia: {auxilio.codigo}")
        expect(despues).to_have_text("Después: 2 pregunta(s) más.")
        shot(page, "mi-preguntas-pendientes", "movil")
        # Marked read on another device (the tray's "Marcar leída") is not answered: it is still asked.
        leida = _api(server, build, officer, "POST", f"/api/v1/notificaciones/{ledger()[auxilio.id]['id']}/ack", json={"respuesta": "leida"})
        assert leida.status_code == 200
        page.wait_for_timeout(700)  # the notification_read frame has arrived
        expect(alerta).to_be_visible()
        expect(texto).to_contain_text(f"Emergencia: {auxilio.codigo}")
        # Answered on another device: it leaves this phone, which asks the next.
        answered = _api(server, build, officer, "POST", f"/api/v1/notificaciones/{ledger()[auxilio.id]['id']}/ack", json={"respuesta": "acepto"})
        assert answered.status_code == 200
        expect(texto).to_contain_text(f"Nueva asignación: {urgente.codigo}")
        expect(despues).to_have_text("Después: 1 pregunta(s) más.")
        page.get_by_role("button", name="Acepto").click()
        expect(page.locator("#alerta-estado")).to_contain_text("Respuesta enviada")
        expect(texto).to_contain_text(f"Nueva asignación: {leve.codigo}")
        expect(despues).to_have_text("")
        page.get_by_label("Motivo si no puede (opcional)").fill("Sin vehículo")
        page.get_by_role("button", name="No puedo").click()
        expect(page.locator("#alerta-estado")).to_contain_text("Respuesta enviada")
        expect(alerta).to_be_hidden()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        answers = {tarea_id: (n["respuesta"], n["motivo"]) for tarea_id, n in ledger().items()}
        assert answers == {auxilio.id: ("acepto", None), urgente.id: ("acepto", None), leve.id: ("no_puedo", "Sin vehículo"), quitada.id: (None, None)}
        assert _api(server, build, officer, "GET", "/api/v1/notificaciones?pendientes=true").json()["total"] == 0
        # Nothing left to ask: a reload asks nothing (the release notice, read by the same load, proves it ran).
        page.reload()
        expect(page.get_by_role("alert", name=RELEASE_NOTICE)).to_contain_text(quitada.codigo)
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(alerta).to_be_hidden()
        assert errors == []


@pytest.mark.parametrize("size", SIZES)
def test_phone_page_works_offline_queues_actions_and_shows_conflicts(browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str) -> None:
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    tarea = build.tarea(sup, titulo="Vigilancia nocturna", tipo="vigilancia")
    build.asignacion(tarea, efectivo)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, size, landing="/mi") as (context, page):
        expect(page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')).to_be_visible()
        page.wait_for_function("navigator.serviceWorker.controller !== null || navigator.serviceWorker.ready.then(() => true)")
        page.evaluate("navigator.serviceWorker.ready")
        assert page.evaluate("document.body.dataset.lastEventId") is not None  # online: the socket resumes from the head
        context.set_offline(True)
        page.get_by_role("button", name="Fuera de servicio").click()
        page.locator(f'#actuales [data-tarea-id="{tarea.id}"]').get_by_role("button", name="Iniciar").click()
        expect(page.locator("#cola-resumen")).to_contain_text("2 acciones")
        # Meanwhile the supervisor cancels the tarea: the queued "Iniciar" can no longer apply.
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/estado", json={"estado": "cancelada"}).status_code == 200
        # Opening the page again without coverage shows the last known tareas (service worker + kept data).
        page.reload()
        card = page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')
        # As the officer left it, though the kept copy is older: offering "Iniciar" again queued a second start.
        expect(card).to_have_attribute("data-estado", "en_curso")
        expect(card).to_contain_text("En curso (sin enviar aún)")
        expect(card.get_by_role("button", name="Iniciar")).to_have_count(0)
        expect(page.get_by_role("button", name="Fuera de servicio")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#red")).to_contain_text("Sin cobertura")
        # The tray's script came from the service worker's copy too (without it, its button did nothing offline).
        page.get_by_role("button", name="Notificaciones").click()
        expect(page.locator("#bandeja-panel")).to_be_visible()
        page.get_by_role("button", name="Notificaciones").click()
        # The cached copy's head is as old as the copy: resuming from it would replay every event since.
        assert page.evaluate("document.body.dataset.lastEventId") is None
        shot(page, "mi-sin-cobertura", size)
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=10_000)
        expect(page.locator("#conflictos")).to_contain_text(f"Iniciar {tarea.codigo}: no se aplicó")
        # Why, in Spanish (the problem's mensaje), not the server's English detail: the tarea was cancelled.
        expect(page.locator("#conflictos")).to_contain_text("Una tarea cancelada no puede pasar a en curso.")
        expect(page.locator("#conflictos")).not_to_contain_text("You may only")
        expect(card).to_have_count(0)  # refused: the page shows the server's word, the tarea cancelled
        expect(page.locator("#historial")).to_contain_text(f"{tarea.codigo} · Vigilancia nocturna · Cancelada")
        assert _api(server, build, sup, "GET", f"/api/v1/efectivos/{efectivo.id}").json()["estado_disponibilidad"] == "fuera_servicio"
        page.get_by_role("button", name=f"Entendido: Iniciar {tarea.codigo}").click()
        expect(page.locator("#conflictos li")).to_have_count(0)


def test_a_tarea_started_without_coverage_is_dated_when_it_was_started(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Actions the outbox kept were timed at their arrival: a patrol started offline began, for the reports, when the
    phone found coverage again. A change carries the moment it was pressed, as a position fix carries its own."""
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    tarea = build.tarea(sup, titulo="Ronda sin cobertura", created_at=datetime.now(UTC) - timedelta(hours=1))
    build.asignacion(tarea, efectivo)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (context, page):
        expect(page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')).to_be_visible()
        context.set_offline(True)
        pressed = datetime.now(UTC)
        page.locator(f'#actuales [data-tarea-id="{tarea.id}"]').get_by_role("button", name="Iniciar").click()
        expect(page.locator("#cola-resumen")).to_contain_text("1 acción")
        page.wait_for_timeout(3000)
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=10_000)
    started = datetime.fromisoformat(_api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()["inicio_real"])
    assert abs((started - pressed).total_seconds()) < 2, (started, pressed)


def test_an_availability_chosen_offline_does_not_undo_the_centrals_change_made_meanwhile(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (context, page):
        expect(page.get_by_role("button", name="Disponible", exact=True)).to_have_attribute("aria-pressed", "true")
        context.set_offline(True)
        page.get_by_role("button", name="No disponible").click()
        expect(page.locator("#cola-resumen")).to_contain_text("1 acción")
        # Meanwhile the central ends the officer's shift.
        ended = _api(server, build, sup, "POST", f"/api/v1/efectivos/{efectivo.id}/disponibilidad", json={"estado": "fuera_servicio"})
        assert ended.status_code == 200
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=10_000)
        expect(page.locator("#conflictos")).to_contain_text("Disponibilidad: No disponible: no se aplicó")
        expect(page.locator("#conflictos")).to_contain_text("ahora es «fuera de servicio»")
        expect(page.get_by_role("button", name="Fuera de servicio")).to_have_attribute("aria-pressed", "true")
        assert _api(server, build, sup, "GET", f"/api/v1/efectivos/{efectivo.id}").json()["estado_disponibilidad"] == "fuera_servicio"


def test_an_availability_waiting_to_be_sent_stays_shown_when_a_position_fix_bumps_the_efectivo(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """A position fix changes the efectivo's version, not its availability: the page used to judge a queued choice by
    the version and, once a fix reached its copy, showed the old availability though the choice was still to be sent."""
    sup = build.usuario(2)
    officer, efectivo = _officer(build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        # The choice does not get through (a dead spot), while the live socket still brings the central's news.
        page.route("**/api/v1/efectivos/*/disponibilidad", lambda route: route.abort())
        page.get_by_role("button", name="No disponible").click()
        expect(page.locator("#cola-resumen")).to_contain_text("1 acción")
        moved = _api(server, build, sup, "PUT", f"/api/v1/efectivos/{efectivo.id}/ubicacion", json={"lat": 40.4168, "lng": -3.7038})
        assert moved.status_code == 200, moved.text
        version = moved.json()["version"]
        kept_version = "JSON.parse(localStorage.getItem('gad:mi:datos') ?? 'null')?.efectivo?.version ?? 0"
        for _ in range(100):  # the fix's frame reloads the page's copy
            if page.evaluate(kept_version) >= version:
                break
            page.wait_for_timeout(100)
        assert page.evaluate(kept_version) >= version, "the page never read the efectivo the fix changed"
        expect(page.get_by_role("button", name="No disponible")).to_have_attribute("aria-pressed", "true")
        page.unroute("**/api/v1/efectivos/*/disponibilidad")
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=10_000)
        assert _api(server, build, sup, "GET", f"/api/v1/efectivos/{efectivo.id}").json()["estado_disponibilidad"] == "no_disponible"


@pytest.mark.parametrize("size", SIZES)
def test_sos_raises_an_emergency_at_my_position_and_says_who_is_coming(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str
) -> None:
    officer, _ = _officer(build)
    build.efectivo(nombre="Agente Compañero", lat=40.4180, lon=-3.7035, posicion_en=datetime.now(UTC))
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, size, landing="/mi") as (_, page):
        page.get_by_role("button", name="SOS").click()
        expect(page.locator("#sos-resultado")).to_contain_text(re.compile(r"SOS EMG-\d{8}-\d{4}: va en camino Agente Compañero \(a 12\d m\)"), timeout=10_000)
        shot(page, "mi-sos", size)


def test_an_sos_from_a_phone_without_a_position_goes_out_at_the_last_one_the_central_has(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Geolocation refused (or no fix indoors): the SOS said "No se conoce su posición: llame a la central" and sent
    nothing, though the central had this officer's position of a few minutes ago."""
    officer, _ = _officer(build, lat=40.4169, lon=-3.7035, posicion_en=datetime.now(UTC) - timedelta(minutes=4))
    build.efectivo(nombre="Agente Compañero", lat=40.4180, lon=-3.7035, posicion_en=datetime.now(UTC))
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/tareas") as (context, page):
        context.clear_permissions()
        page.goto("/mi")
        page.get_by_role("button", name="SOS").click()
        expect(page.locator("#sos-resultado")).to_contain_text(re.compile(r"SOS EMG-\d{8}-\d{4}: va en camino Agente Compañero \(a 12\d m\)"), timeout=15_000)
    emergencia = _api(server, build, build.usuario(2), "GET", "/api/v1/tasks?q=EMG-&limit=1").json()["items"][0]
    assert (emergencia["ubicacion_lat"], emergencia["ubicacion_lng"]) == (40.4169, -3.7035)
    assert emergencia["ubicacion_descripcion"].startswith("Última posición conocida de ")


def test_pages_say_in_spanish_what_cannot_be_shown(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """A tarea that does not exist stayed "Cargando…" over an empty motivo box; a phone without location permission
    said "No se pudo obtener la posición: User denied Geolocation"."""
    officer, _ = _officer(build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/tareas") as (context, page):
        page.goto("/tareas/999999")
        expect(page.get_by_role("heading", level=1)).to_have_text("Esta tarea no existe")
        expect(page.locator("#motivo")).to_be_hidden()
        context.clear_permissions()
        page.goto("/mi")
        expect(page.locator("#posicion-estado")).to_contain_text("el permiso de ubicación está denegado", timeout=15_000)
        expect(page.locator("#posicion-estado")).not_to_contain_text("User denied")


def test_phone_page_first_load_is_under_200_kb(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    officer, _ = _officer(build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (context, _):
        cookies = context.cookies()
    # A phone that never saw the page: no HTTP cache, no service worker; the session cookie only.
    fresh = browser.new_context(**context_options(pw, "movil", server.url), service_workers="block")
    try:
        fresh.add_cookies(cookies)  # type: ignore[arg-type]
        page = fresh.new_page()
        page.context.new_cdp_session(page).send("Network.setCacheDisabled", {"cacheDisabled": True})
        transferred: dict[str, int] = {}

        def count(request) -> None:  # type: ignore[no-untyped-def]
            sizes = request.sizes()
            transferred[request.url] = transferred.get(request.url, 0) + sizes["responseBodySize"] + sizes["responseHeadersSize"]

        page.on("requestfinished", count)
        page.goto("/mi")
        page.wait_for_load_state("networkidle")
        total = sum(transferred.values())
        print(f"/mi first load: {total} bytes transferred in {len(transferred)} requests")
        for url, size in sorted(transferred.items(), key=lambda item: -item[1]):
            print(f"  {size:>7}  {url.removeprefix(server.url)}")
        assert total < 200_000
    finally:
        fresh.close()


# --- operators' management pages -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_admin_manages_usuarios_with_spanish_field_errors(browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str) -> None:
    admin = build.usuario(3)
    with logged_in(browser, pw, server.url, admin.email, PASSWORD, size, landing="/usuarios") as (_, page):
        page.on("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Nuevo usuario").click()
        form = page.locator("dialog[open] form")
        form.get_by_label("Correo electrónico").fill("no-es-correo")
        form.get_by_label("Contraseña inicial").fill("una-clave-larga-2026")
        form.get_by_label("DNI").fill("12")
        form.get_by_label("Nombre", exact=True).fill("Lucía")
        form.get_by_label("Apellido").fill("Martín")
        form.get_by_role("button", name="Crear").click()
        expect(form.locator('[id$="-error-email"]')).to_have_text("Escriba un correo válido, p. ej. nombre@dominio.es.")
        expect(form.locator('[id$="-error-dni"]')).to_have_text("Demasiado corto: al menos 5 caracteres.")
        expect(form.get_by_label("DNI")).to_have_attribute("aria-invalid", "true")
        form.get_by_label("Correo electrónico").fill("lucia@gad.test")
        form.get_by_label("DNI").fill("44556677L")
        form.get_by_role("button", name="Crear").click()
        row = page.locator("#usuarios tr", has_text="lucia@gad.test")
        expect(row).to_contain_text("Efectivo")
        row.get_by_role("button", name="Editar Lucía Martín").click()
        form = page.locator("dialog[open] form")
        form.get_by_label("Nivel").select_option("2")
        form.get_by_label("Teléfono").fill("+34 600 000 000")
        form.get_by_label("Verificado").check()
        form.get_by_role("button", name="Guardar").click()
        expect(row).to_contain_text("Supervisor")
        row.get_by_role("button", name="Restablecer la contraseña de Lucía Martín").click()
        page.locator("dialog[open] form").get_by_label("Nueva contraseña").fill("otra-clave-larga-2026")
        page.locator("dialog[open] form").get_by_role("button", name="Restablecer").click()
        expect(page.locator("#aviso")).to_contain_text("sus sesiones se han cerrado")
        login = requests.post(server.url + "/api/v1/auth/login", json={"email": "lucia@gad.test", "password": "otra-clave-larga-2026"}, timeout=30)
        her_token = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert requests.get(server.url + "/api/v1/users/me", headers=her_token, timeout=30).status_code == 200
        row.get_by_role("button", name="Cerrar las sesiones de Lucía Martín").click()
        expect(page.locator("#aviso")).to_contain_text("Sesiones de lucia@gad.test cerradas")
        assert requests.get(server.url + "/api/v1/users/me", headers=her_token, timeout=30).status_code == 401
        row.get_by_role("button", name="Desactivar a Lucía Martín").click()
        expect(row.locator("td").nth(4)).to_have_text("No")
        row.get_by_role("button", name="Reactivar a Lucía Martín").click()
        expect(row.locator("td").nth(4)).to_have_text("Sí")
        shot(page, "usuarios-gestion", size)
    created = [u for u in _api(server, build, admin, "GET", "/api/v1/users?q=lucia").json()["items"]]
    assert [(u["nivel"], u["telefono"], u["verificado"], u["activo"]) for u in created] == [(2, "+34 600 000 000", True, True)]


@pytest.mark.parametrize("size", SIZES)
def test_supervisor_manages_efectivos_and_pages_through_all_of_them(browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str) -> None:
    sup = build.usuario(2)
    officer = build.usuario(1, nombre="Pablo", apellido="Ruiz")
    for n in range(55):
        build.efectivo(codigo_interno=f"LOTE-{n:03d}", nombre=f"Agente Lote {n}")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, size, landing="/efectivos") as (_, page):
        page.on("dialog", lambda dialog: dialog.accept())
        expect(page.locator("#total")).to_have_text("55 en total · del 1 al 50")
        page.get_by_role("button", name="Siguiente").click()
        expect(page.locator("#total")).to_have_text("55 en total · del 51 al 55")
        expect(page.locator("#efectivos tr")).to_have_count(5)
        # The page is in the address: Back returns to the first, Forward and a reload keep the second.
        assert page.url.endswith("pagina=2"), page.url
        page.go_back()
        expect(page.locator("#total")).to_have_text("55 en total · del 1 al 50")
        page.go_forward()
        expect(page.locator("#total")).to_have_text("55 en total · del 51 al 55")
        page.reload()
        expect(page.locator("#total")).to_have_text("55 en total · del 51 al 55")
        # A filter applied from the second page is a step of its own: Back returns to that page, unfiltered.
        page.get_by_label("Buscar").fill("Lote 7")
        page.get_by_role("button", name="Filtrar").click()
        expect(page.locator("#total")).to_contain_text("en total · del 1 al")
        page.go_back()
        expect(page.locator("#total")).to_have_text("55 en total · del 51 al 55")
        expect(page.get_by_label("Buscar")).to_have_value("")
        # A page past the end (a bookmark of a list that shrank): its last page.
        page.goto(page.url.replace("pagina=2", "pagina=9"))
        expect(page.locator("#total")).to_have_text("55 en total · del 51 al 55")
        page.get_by_role("button", name="Nuevo efectivo").click()
        form = page.locator("dialog[open] form")
        form.get_by_label("Código interno").fill("AB")
        form.get_by_label("Nombre").fill("Agente Pablo")
        form.get_by_label("Usuario vinculado (para su página Mi servicio)").select_option(str(officer.id))
        form.get_by_role("button", name="Crear").click()
        expect(form.locator('[id$="-error-codigo_interno"]')).to_have_text("Demasiado corto: al menos 3 caracteres.")
        form.get_by_label("Código interno").fill("PAB-001")
        form.get_by_label("Unidad").fill("Móvil 7")
        form.get_by_role("button", name="Crear").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        page.get_by_label("Buscar").fill("Pablo")
        page.get_by_role("button", name="Filtrar").click()
        expect(page.locator("#total")).to_have_text("1 en total · del 1 al 1")
        row = page.locator("#efectivos tr", has_text="PAB-001")
        expect(row).to_contain_text("sin posición")
        row.get_by_role("button", name="Editar Agente Pablo").click()
        page.locator("dialog[open] form").get_by_label("Nombre").fill("")
        page.locator("dialog[open] form").get_by_role("button", name="Guardar").click()
        expect(page.locator('dialog[open] [id$="-error-nombre"]')).to_have_text("Este campo no puede quedar vacío.")
        page.locator("dialog[open] form").get_by_label("Nombre").fill("Agente Pablo")
        page.locator("dialog[open] form").get_by_label("Rango").fill("Sargento")
        page.locator("dialog[open] form").get_by_role("button", name="Guardar").click()
        expect(row).to_contain_text("Sargento · Móvil 7")
        row.get_by_role("button", name="Disponibilidad de Agente Pablo").click()
        form = page.locator("dialog[open] form")
        form.get_by_label("Disponibilidad").select_option("no_disponible")
        form.get_by_label("Motivo (opcional)").fill("Cita médica")
        form.get_by_role("button", name="Guardar").click()
        expect(row.locator("[data-disponibilidad]")).to_have_text("No disponible")
        shot(page, "efectivos-gestion", size)
        row.get_by_role("button", name="Dar de baja a Agente Pablo").click()
        expect(page.locator("#total")).to_have_text("Sin resultados: nada coincide con estos filtros.")
    [pablo] = _api(server, build, sup, "GET", "/api/v1/efectivos?q=Pablo&activo=false").json()["items"]
    assert (pablo["usuario_id"], pablo["rango"], pablo["activo"]) == (officer.id, "Sargento", False)


def test_a_refusal_said_by_its_field_is_not_repeated_above_the_form(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """A duplicate código read "No es posible en el estado actual. Ya hay un efectivo con ese código." twice: at the
    top of the dialog and under the field."""
    sup = build.usuario(2)
    build.efectivo(codigo_interno="DUP-001")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        page.get_by_role("button", name="Nuevo efectivo").click()
        form = page.locator("dialog[open] form")
        form.get_by_label("Código interno").fill("DUP-001")
        form.get_by_label("Nombre").fill("Agente Repetido")
        form.get_by_role("button", name="Crear").click()
        expect(form.locator('[id$="-error-codigo_interno"]')).to_contain_text("Ya hay un efectivo")
        expect(form.locator(".form-alerta")).to_have_text("Revise los campos marcados.")


@pytest.mark.parametrize("size", SIZES)
def test_tarea_edit_that_lost_a_race_shows_the_other_change_and_reapplies_mine(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str
) -> None:
    sup, other = build.usuario(2), build.usuario(2)
    tarea = build.tarea(sup, titulo="Vigilancia del museo", prioridad=2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, size, landing=f"/tareas/{tarea.id}") as (_, page):
        page.get_by_text("Editar datos").click()
        expect(page.get_by_label("Título")).to_have_value("Vigilancia del museo")
        page.get_by_label("Título").fill("Vigilancia del museo (refuerzo)")
        # Someone else changes the prioridad meanwhile.
        assert _api(server, build, other, "PATCH", f"/api/v1/tasks/{tarea.id}", json={"prioridad": 5, "notas": "Alerta de robo"}).status_code == 200
        page.get_by_role("button", name="Guardar cambios").click()
        conflict = page.locator("#conflicto")
        expect(conflict).to_be_visible()
        expect(conflict.locator('[data-campo="prioridad"]')).to_contain_text("5")
        expect(conflict.locator('[data-campo="titulo"]')).to_contain_text("Vigilancia del museo (refuerzo)")
        shot(page, "tarea-conflicto", size)
        page.get_by_role("button", name="Reaplicar mis cambios").click()
        expect(page.locator("#tarea-titulo")).to_have_text("Vigilancia del museo (refuerzo)")
        expect(conflict).to_be_hidden()
    saved = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()
    assert (saved["titulo"], saved["prioridad"], saved["notas"]) == ("Vigilancia del museo (refuerzo)", 5, "Alerta de robo")


def test_a_motivo_is_recorded_with_its_own_change_only(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The motivo stayed in its box after the change it was typed for, and every later change recorded it again:
    "Pausada → En curso (Pausa para café)", "En curso → Finalizada (Pausa para café)"."""
    sup = build.usuario(2)
    tarea = build.tarea(sup, estado="en_curso", inicio_real=datetime.now(UTC))
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing=f"/tareas/{tarea.id}") as (_, page):
        expect(page.locator("#tarea-estado")).to_have_text("En curso")
        page.locator("#motivo").fill("Pausa para café")
        page.get_by_role("button", name="Pasar a Pausada").click()
        expect(page.locator("#tarea-estado")).to_have_text("Pausada")
        expect(page.locator("#motivo")).to_have_value("")
        page.get_by_role("button", name="Pasar a En curso").click()
        expect(page.locator("#tarea-estado")).to_have_text("En curso")
    historial = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}/historial").json()
    assert [(h["estado_nuevo"], h["motivo"]) for h in historial] == [("pausada", "Pausa para café"), ("en_curso", "Tarea reanudada")]


def test_tarea_edit_says_it_saved_and_that_one_cleared_coordinate_needs_the_other(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Emptying only the longitude saved nothing and said nothing (the old value came back); a save said nothing either."""
    sup = build.usuario(2)
    inicio = datetime(2027, 3, 1, 7, 30, 15, 123456, tzinfo=UTC)
    tarea = build.tarea(sup, ubicacion_lat=40.4168, ubicacion_lon=-3.7035, inicio_programado=inicio, fin_programado=inicio + timedelta(hours=2))
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing=f"/tareas/{tarea.id}") as (_, page):
        page.locator("#editar summary").click()
        expect(page.get_by_label("Longitud")).to_have_value("-3.7035")
        # Instants as the browser's wall clock to the minute (this browser runs on UTC), not UTC with microseconds.
        expect(page.get_by_label("Inicio programado (ISO 8601 con zona)")).to_have_value("2027-03-01T07:30+00:00")
        page.get_by_label("Longitud").fill("")
        page.get_by_role("button", name="Guardar cambios").click()
        expect(page.locator("#form-tarea-error-ubicacion_lng")).to_have_text("Latitud y longitud van juntas: indique las dos.")
        expect(page.locator("#guardado")).to_be_hidden()
        page.get_by_label("Latitud").fill("")
        page.get_by_role("button", name="Guardar cambios").click()
        expect(page.locator("#guardado")).to_be_visible()
        expect(page.locator("#guardado")).to_have_text("Cambios guardados.")
        expect(page.get_by_label("Latitud")).to_have_value("")  # the saved tarea read back
        page.get_by_label("Título").fill("Ronda sin lugar fijo")
        expect(page.locator("#guardado")).to_be_hidden()
    data = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()
    assert (data["ubicacion_lat"], data["ubicacion_lng"]) == (None, None)
    assert data["inicio_programado"] == "2027-03-01T07:30:15.123456Z"  # shown to the minute, untouched: not rewritten


def test_tarea_edit_that_empties_the_titulo_says_so_next_to_it(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    sup = build.usuario(2)
    tarea = build.tarea(sup, titulo="Vigilancia del museo")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing=f"/tareas/{tarea.id}") as (_, page):
        page.get_by_text("Editar datos").click()
        page.get_by_label("Título").fill("   ")  # sent as null: the form clears what it empties
        page.get_by_role("button", name="Guardar cambios").click()
        expect(page.locator("#form-tarea-error-titulo")).to_have_text("Este campo no puede quedar vacío.")
        expect(page.get_by_label("Título")).to_have_attribute("aria-invalid", "true")
    saved = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()
    assert (saved["titulo"], saved["version"]) == ("Vigilancia del museo", 1)


def test_a_save_pressed_before_the_tarea_has_arrived_waits_for_it(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """On a slow link the form is on screen before the tarea's first answer; a save pressed then did nothing at all
    (the changes are measured against that answer): the operator's edit was lost without a word."""
    sup = build.usuario(2)
    tarea = build.tarea(sup, titulo="Vigilancia del museo")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio") as (_, page):
        held = Held(page, rf"/api/v1/tasks/{tarea.id}$")
        page.goto(f"/tareas/{tarea.id}")
        page.get_by_text("Editar datos").click()
        page.get_by_label("Título").fill("   ")
        page.get_by_role("button", name="Guardar cambios").click()
        held.wait()
        page.wait_for_timeout(300)
        held.release()
        expect(page.locator("#form-tarea-error-titulo")).to_have_text("Este campo no puede quedar vacío.")
        expect(page.get_by_label("Título")).to_have_value("   ")  # what was typed before the answer stays
        page.get_by_label("Título").fill("Vigilancia del museo (refuerzo)")
        page.get_by_role("button", name="Guardar cambios").click()
        expect(page.locator("#tarea-titulo")).to_have_text("Vigilancia del museo (refuerzo)")
    saved = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()
    assert (saved["titulo"], saved["version"]) == ("Vigilancia del museo (refuerzo)", 2)


@pytest.mark.parametrize("size", SIZES)
def test_board_counts_link_to_filtered_lists_and_the_feed_starts_from_the_log(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str
) -> None:
    sup = build.usuario(2)
    for n in range(3):
        assert (
            _api(
                server, build, sup, "POST", "/api/v1/tasks", json={"codigo": f"FEED-{n}", "titulo": f"Tarea del registro {n}", "tipo": "vigilancia"}
            ).status_code
            == 201
        )
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, size) as (_, page):
        expect(page.locator("#feed li")).to_have_count(3)
        expect(page.locator("#feed li").first).to_contain_text("Tarea creada · FEED-2")
        page.get_by_role("link", name="Ver todas las tareas programadas").click()
        page.wait_for_url("**/tareas?estado=programada")
        expect(page.locator("#total")).to_have_text("3 en total · del 1 al 3")
        expect(page.get_by_label("Estado")).to_have_value("programada")


def test_a_list_opened_without_filters_keeps_its_address(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The lists wrote their filters into the address even when there were none: /tareas became /tareas? as it loaded,
    so the address bookmarked was not the one opened, and whoever waited for /tareas (a test, as a race) never saw it."""
    admin = build.usuario(3)
    with logged_in(browser, pw, server.url, admin.email, PASSWORD) as (_, page):
        for path in ("/tareas", "/usuarios"):  # (/efectivos opens filtered to those in service: ?activo=true)
            page.goto(path)
            expect(page.locator("#total")).to_have_text(re.compile("en total|Sin resultados: la lista está vacía"))
            assert page.url == server.url + path
        page.goto("/tareas")
        page.get_by_label("Estado").select_option("programada")
        page.get_by_role("button", name="Filtrar").click()
        page.wait_for_url(server.url + "/tareas?estado=programada")
        page.get_by_label("Estado").select_option("")
        page.get_by_role("button", name="Filtrar").click()
        page.wait_for_url(server.url + "/tareas")


def test_board_is_usable_from_the_keyboard(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD) as (_, page):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Saltar al contenido"
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "abrir-emergencia":
                break
        assert page.evaluate("document.activeElement.id") == "abrir-emergencia"
        page.keyboard.press("Enter")
        expect(page.get_by_label("Latitud")).to_be_focused()
        page.keyboard.type("40.4169")
        page.keyboard.press("Tab")
        page.keyboard.type("-3.7035")
        page.keyboard.press("Enter")
        expect(page.locator("#emg-resultado")).to_contain_text("Emergencia creada")


@pytest.mark.parametrize("size", SIZES)
def test_a_usuario_created_by_an_administrador_changes_the_password_at_first_login(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str
) -> None:
    admin = build.usuario(3)
    body = {"email": f"nuevo-{size}@gad.test", "password": "clave-inicial-2026", "dni": f"7777{len(size)}777N", "nombre": "Nuevo", "apellido": "Agente"}
    assert _api(server, build, admin, "POST", "/api/v1/users", json=body).json()["debe_cambiar_clave"] is True
    context = browser.new_context(**context_options(pw, size, server.url))
    try:
        page = context.new_page()
        refused: list[str] = []  # the page must not call an API that refuses them until the password is changed
        page.on("response", lambda response: refused.append(response.url) if "/api/" in response.url and response.status >= 400 else None)
        page.goto("/login?next=/mi")
        page.get_by_label("Correo electrónico").fill(body["email"])
        page.get_by_label("Contraseña").fill(body["password"])
        page.get_by_role("button", name="Entrar").click()
        page.wait_for_url("**/cambiar-clave?next=/mi")
        page.wait_for_load_state("networkidle")
        assert refused == []
        assert axe_violations(page) == []
        shot(page, "cambiar-clave", size)
        page.get_by_label("Contraseña actual").fill(body["password"])
        page.get_by_label("Nueva contraseña (al menos 10 caracteres)").fill("corta")
        page.get_by_label("Repita la nueva contraseña").fill("corta")
        page.get_by_role("button", name="Guardar y continuar").click()
        expect(page.locator("#error-password")).to_have_text("Demasiado corta: al menos 10 caracteres.")
        page.get_by_label("Contraseña actual").fill(body["password"])
        page.get_by_label("Nueva contraseña (al menos 10 caracteres)").fill("mi-clave-propia-2026")
        page.get_by_label("Repita la nueva contraseña").fill("mi-clave-propia-2026")
        page.get_by_role("button", name="Guardar y continuar").click()
        page.wait_for_url(server.url + "/mi")
        expect(page.get_by_role("heading", name="Mi servicio")).to_be_visible()
        page.goto("/")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
    finally:
        context.close()
