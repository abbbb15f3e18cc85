"""What a page does before, or without, its first read: a control on screen before the data it acts on must not
lose what the user did with it, and a first read that fails must be said and tried again (Chromium)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Playwright, Route, expect

from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer
from tests.support.browser import SOL, UNAVAILABLE, Held, fail_once, logged_in, server_without_tiles_fixture

pytestmark = pytest.mark.slow

server = server_without_tiles_fixture("server")
CLOSED_SHOWN = 20  # board.js


def _api(server: LiveServer, build: Builders, who: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url + path, headers=build.headers(who), timeout=30, **kwargs)


def _until(check: Callable[[], bool], message: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


def test_the_phone_page_takes_no_choice_and_loses_no_position_before_its_efectivo_is_read(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The availability buttons were live before the first read: a tap then did nothing (no request, "Todo enviado.")
    while dispatch went on counting the officer available. A position taken then was counted as sent and never sent."""
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Nuria")
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/efectivos", service_workers="block") as (_, page):
        held = Held(page, r"/api/v1/efectivos\?limit=1$")
        page.goto("/mi")
        held.wait()
        no_disponible = page.get_by_role("button", name="No disponible")
        expect(no_disponible).to_be_disabled()
        expect(page.locator("#mi-efectivo")).to_contain_text("Cargando sus datos")
        # After 5 s without the read the page starts its position watch: the fix is taken, the efectivo still unknown.
        expect(page.locator("#posicion-estado")).to_contain_text("Última posición tomada", timeout=15_000)
        held.release()
        expect(no_disponible).to_be_enabled()
        expect(page.locator("#mi-efectivo")).to_contain_text("Agente Nuria")

        def position_sent() -> bool:
            data = _api(server, build, officer, "GET", f"/api/v1/efectivos/{efectivo.id}").json()
            return data["lat"] == pytest.approx(SOL["latitude"]) and data["lng"] == pytest.approx(SOL["longitude"])

        _until(position_sent, "the position taken before the efectivo was read never reached the server")
        no_disponible.click()
        _until(
            lambda: _api(server, build, officer, "GET", f"/api/v1/efectivos/{efectivo.id}").json()["estado_disponibilidad"] == "no_disponible",
            "the choice made once the efectivo was read was not sent",
        )


def test_a_board_whose_first_read_failed_says_so_reads_again_and_goes_live(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """One 503 on the board's first read of the tareas left it empty ("0" in every column, which reads as a quiet
    shift) and never live: an emergency raised afterwards never appeared."""
    sup = build.usuario(2)
    tarea = build.tarea(sup, titulo="Ronda del puerto")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/tareas") as (_, page):
        fail_once(page, r"/api/v1/tasks\?estado=programada")
        page.goto("/")
        expect(page.locator("#lectura-fallida")).to_contain_text("No se pudieron cargar las tareas")
        expect(page.locator(f'.tarjetas [data-tarea-id="{tarea.id}"]')).to_be_visible(timeout=15_000)
        expect(page.locator("#lectura-fallida")).to_be_hidden()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=15_000)
        raised = _api(server, build, sup, "POST", "/api/v1/tasks/emergency", json={"lat": 40.41, "lng": -3.70})
        assert raised.status_code == 201, raised.text
        expect(page.locator(f'#lista-emergencias [data-tarea-id="{raised.json()["tarea"]["id"]}"]')).to_be_visible(timeout=10_000)


def test_a_tarea_page_whose_first_read_failed_reads_again_and_a_double_save_is_one_save(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """A failed first read left "Cargando…" for good and every save returned at once; a double click on "Guardar
    cambios" sent the change twice under one version, and the second's 412 was shown as someone else's change."""
    sup = build.usuario(2)
    tarea = build.tarea(sup, titulo="Vigilancia del museo")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/tareas") as (_, page):
        fail_once(page, rf"/api/v1/tasks/{tarea.id}$")
        page.goto(f"/tareas/{tarea.id}")
        expect(page.locator("#error")).to_be_visible()
        expect(page.locator("#tarea-titulo")).to_have_text("Vigilancia del museo", timeout=15_000)
        expect(page.locator("#error")).to_be_hidden()
        page.get_by_text("Editar datos").click()
        page.get_by_label("Título").fill("Vigilancia del museo (refuerzo)")
        page.get_by_role("button", name="Guardar cambios").dblclick()
        expect(page.locator("#tarea-titulo")).to_have_text("Vigilancia del museo (refuerzo)")
        page.wait_for_timeout(500)
        expect(page.locator("#conflicto")).to_be_hidden()
    saved = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()
    assert (saved["titulo"], saved["version"]) == ("Vigilancia del museo (refuerzo)", 2)


def test_the_planning_page_before_and_without_its_week(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Before the week arrived "Guardar turno" said "Cannot read properties of null", "Semana siguiente" did nothing;
    a failed read of the week said nothing and was never tried again."""
    sup = build.usuario(2)
    build.efectivo(nombre="Agente Planificada", unidad="Planificación-Primeras")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/tareas") as (_, page):
        answers: list[str] = []

        def fail_then_hold(route: Route) -> None:
            answers.append(route.request.url)
            if len(answers) == 1:
                route.fulfill(**UNAVAILABLE)
            else:
                held.routes.append(route)

        held = Held(page, r"/api/v1/planificacion/semana", answer=fail_then_hold)
        page.goto("/planificacion")
        expect(page.locator("#rango")).to_contain_text("No se pudo cargar la semana")
        held.wait()  # the read tried again, held
        page.locator("#form-turno").get_by_role("button", name="Guardar turno").click()
        expect(page.locator("#conflictos")).to_contain_text("La semana aún no se ha cargado")
        page.get_by_role("button", name="Semana siguiente ›").click()
        expect(page.locator("#semana")).not_to_have_value("")
        held.release()
        expect(page.locator("#rango")).to_contain_text("Semana del", timeout=15_000)


def test_paging_before_an_answer_never_walks_past_the_last_page(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The page buttons were live before the first answer and moved from the page last asked for: pressed then, or
    twice before an answer, "Siguiente" showed "del 51 al 50", "Página 2 de 1" and an empty table."""
    sup = build.usuario(2)
    unidad = "Paginación-Primeras"
    for n in range(51):
        build.efectivo(nombre=f"Agente {n:02d}", unidad=unidad)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/tareas") as (_, page):
        held = Held(page, r"/api/v1/efectivos\?")
        page.goto(f"/efectivos?unidad={unidad}")
        held.wait()
        siguiente = page.get_by_role("button", name="Siguiente")
        expect(siguiente).to_be_disabled()
        expect(page.get_by_role("button", name="Anterior")).to_be_disabled()
        held.release()
        expect(page.locator("#total")).to_have_text("51 en total · del 1 al 50")
        held = Held(page, r"/api/v1/efectivos\?")
        siguiente.click()
        held.wait()
        siguiente.click()  # again, before the answer
        held.release()
        expect(page.locator("#pagina")).to_have_text("Página 2 de 2")
        expect(page.locator("#total")).to_have_text("51 en total · del 51 al 51")
        expect(siguiente).to_be_disabled()


def test_a_second_press_while_the_form_is_being_prepared_opens_one_dialog(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The "Nuevo efectivo" button opens its dialog once the usuarios are read: pressed again meanwhile, it opened a
    second dialog over the first. Closed, the dialog gives the focus back to the button."""
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        held = Held(page, r"/api/v1/users\?")
        nuevo = page.get_by_role("button", name="Nuevo efectivo")
        nuevo.focus()
        page.keyboard.press("Enter")
        held.wait()
        expect(nuevo).to_have_attribute("aria-disabled", "true")
        nuevo.click(force=True)  # a real click on it: the guard, not the browser, refuses it
        held.release()
        expect(page.get_by_role("dialog")).to_have_count(1)
        page.wait_for_timeout(500)
        expect(page.get_by_role("dialog")).to_have_count(1)
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(nuevo).to_be_focused()


def test_the_board_reads_the_latest_closed_tareas_and_counts_them_all(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The board read every tarea ever made, closed ones included, page after page, on every load and resync: with a
    year of history it never finished loading. It reads the open tareas and the latest closed ones; a closed column
    counts the server's total (also when a closed tarea it never read is edited or deleted), and a tarea closed while
    it watches joins it. "Latest" is latest closed: a tarea created a month ago and finished a minute ago leads its
    column, ahead of tareas created since and closed earlier."""
    sup, admin = build.usuario(2), build.usuario(3)
    now = datetime.now(UTC)
    antiguas = [build.tarea(sup, estado="finalizada", inicio_real=now - timedelta(hours=2), fin_real=now - timedelta(hours=1)) for _ in range(CLOSED_SHOWN + 5)]
    del_mes_pasado = build.tarea(
        sup, estado="finalizada", created_at=now - timedelta(days=30), inicio_real=now - timedelta(days=30), fin_real=now - timedelta(minutes=1)
    )
    abierta = build.tarea(sup, titulo="Ronda que termina ahora")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/tareas") as (_, page):
        page.goto("/")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=15_000)
        total = _api(server, build, sup, "GET", "/api/v1/tasks?estado=finalizada&limit=1").json()["total"]
        assert total > CLOSED_SHOWN
        finalizadas = page.locator('.tarjetas[data-estado="finalizada"] .tarjeta')
        expect(finalizadas).to_have_count(CLOSED_SHOWN)
        expect(finalizadas.first).to_have_attribute("data-tarea-id", str(del_mes_pasado.id))
        expect(finalizadas.first.locator(".asignados")).to_contain_text("Finalizada el")  # not "Sin asignar": it closed
        contador = page.locator('[data-contador="finalizada"]')
        expect(contador).to_have_text(str(total))
        # Two the board never read (the oldest): one edited, one deleted.
        edited = _api(server, build, sup, "PATCH", f"/api/v1/tasks/{antiguas[0].id}", json={"notas": "Informe adjunto"})
        assert edited.status_code == 200, edited.text
        assert _api(server, build, admin, "DELETE", f"/api/v1/tasks/{antiguas[1].id}").status_code == 204
        expect(contador).to_have_text(str(total - 1))
        page.wait_for_timeout(1000)  # the edit's frame has been handled by now: it neither counts nor shows the card
        expect(contador).to_have_text(str(total - 1))
        expect(finalizadas).to_have_count(CLOSED_SHOWN)
        for estado in ("en_curso", "finalizada"):
            moved = _api(server, build, sup, "POST", f"/api/v1/tasks/{abierta.id}/estado", json={"estado": estado})
            assert moved.status_code == 200, moved.text
        expect(finalizadas.first).to_have_attribute("data-tarea-id", str(abierta.id), timeout=10_000)
        expect(finalizadas.nth(1)).to_have_attribute("data-tarea-id", str(del_mes_pasado.id))
        expect(contador).to_have_text(str(total))
        expect(finalizadas).to_have_count(CLOSED_SHOWN)  # the column keeps showing the latest CLOSED_SHOWN


def test_the_phone_page_reads_again_after_its_first_read_failed(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """A 503 on /mi's first read, with nothing kept on the phone, left "Cargando sus datos…" and the availability
    buttons disabled for good, the error written into a notice that stayed hidden."""
    officer = build.usuario(1)
    build.efectivo(usuario_id=officer.id, nombre="Agente Nuria")
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/efectivos", service_workers="block") as (_, page):
        fail_once(page, r"/api/v1/efectivos\?limit=1$")
        page.goto("/mi")
        expect(page.locator("#red")).to_contain_text("No se pudieron cargar sus datos")
        expect(page.locator("#mi-efectivo")).to_contain_text("se volverá a intentar")
        expect(page.locator("#mi-efectivo")).to_contain_text("Agente Nuria", timeout=25_000)  # the 15 s round
        expect(page.get_by_role("button", name="No disponible")).to_be_enabled()
        expect(page.locator("#red")).to_be_hidden()


def test_the_map_whose_first_read_failed_says_so_and_reads_again(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The map's first read failing left it empty and never live, without a word."""
    sup = build.usuario(2)
    efectivo = build.efectivo(nombre="Agente Situada")
    assert _api(server, build, sup, "PUT", f"/api/v1/efectivos/{efectivo.id}/ubicacion", json={"lat": 40.42, "lng": -3.71}).status_code == 200
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/tareas") as (_, page):
        fail_once(page, r"/api/v1/efectivos\?")
        page.goto("/mapa")
        aviso = page.locator("#mapa-error")
        expect(aviso).to_have_text("No se pudieron cargar las posiciones: se vuelve a intentar.")
        expect(page.locator("#posiciones")).to_contain_text("Agente Situada", timeout=15_000)
        expect(aviso).to_be_hidden()
