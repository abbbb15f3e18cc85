"""The dashboard in a real headless browser: Playwright driving Debian's Chromium against real gunicorn."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer, start_gunicorn, stop_gunicorn
from tests.support.browser import SCREENSHOTS, server_without_tiles_fixture

pytestmark = pytest.mark.slow
XSS = "<img src=x onerror=alert(1)>"


board_server = server_without_tiles_fixture("board_server")


def _login(browser: Browser, server: LiveServer, email: str) -> tuple[BrowserContext, Page]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/login?next=/")  # the board, whoever logs in (an officer lands on /mi otherwise)
    page.get_by_label("Correo electrónico").fill(email)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    page.wait_for_url(server.url + "/")
    expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
    return context, page


def _card(page: Page, estado: str, tarea_id: int):
    return page.locator(f'.tarjetas[data-estado="{estado}"] [data-tarea-id="{tarea_id}"]')


def test_card_appears_and_moves_column_live_in_another_browser(browser: Browser, board_server: LiveServer, build: Builders) -> None:
    creator, watcher = build.usuario(2), build.usuario(2)
    ctx_a, page_a = _login(browser, board_server, creator.email)
    ctx_b, page_b = _login(browser, board_server, watcher.email)
    try:
        page_a.goto("/tareas/nueva")
        page_a.get_by_label("Código (MAYÚSCULAS, 3-20)").fill("LIVE-UI-1")
        page_a.get_by_label("Título").fill("Patrulla del puerto")
        page_a.get_by_label("Prioridad (1-5)").fill("4")
        page_a.get_by_role("button", name="Crear tarea").click()
        page_a.wait_for_url("**/tareas/*")
        tarea_id = int(page_a.url.rsplit("/", 1)[1])
        expect(_card(page_b, "programada", tarea_id)).to_be_visible(timeout=2_000)
        page_a.get_by_role("button", name="Pasar a En curso").click()
        expect(_card(page_b, "en_curso", tarea_id)).to_be_visible(timeout=2_000)
        expect(_card(page_b, "programada", tarea_id)).to_have_count(0)
        expect(page_a.locator("#historial li")).to_have_count(2)
        page_b.screenshot(path=str(SCREENSHOTS / "tablero-supervisor.png"), full_page=True)
        page_b.set_viewport_size({"width": 390, "height": 844})
        page_b.screenshot(path=str(SCREENSHOTS / "tablero-movil.png"), full_page=True)
    finally:
        ctx_a.close()
        ctx_b.close()


def test_create_form_shows_server_validation_errors_next_to_fields(browser: Browser, board_server: LiveServer, build: Builders) -> None:
    ctx, page = _login(browser, board_server, build.usuario(2).email)
    try:
        page.goto("/tareas/nueva")
        page.get_by_label("Código (MAYÚSCULAS, 3-20)").fill("minusculas")
        page.get_by_label("Título").fill("abc")
        page.get_by_role("button", name="Crear tarea").click()
        expect(page.locator("#error-codigo")).to_be_visible()
        expect(page.locator("#error-titulo")).to_be_visible()
        expect(page.get_by_label("Título")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_label("Código (MAYÚSCULAS, 3-20)")).to_be_focused()  # the first field to fix
    finally:
        ctx.close()


def test_create_form_reads_a_decimal_comma_in_the_coordinates(browser: Browser, board_server: LiveServer, build: Builders) -> None:
    """The coordinates were number fields: a Spanish-locale browser made «-3,7» -37 (a spot in the Atlantic), saved
    without a word. They are text fields with the decimal keypad, and the comma is the decimal point."""
    sup = build.usuario(2)
    ctx, page = _login(browser, board_server, sup.email)
    try:
        page.goto("/tareas/nueva")
        page.get_by_label("Código (MAYÚSCULAS, 3-20)").fill("COMA-1")
        page.get_by_label("Título").fill("Ronda con coma decimal")
        page.get_by_label("Latitud").fill("40,4168")
        page.get_by_label("Longitud").fill("-3,7")
        expect(page.get_by_label("Longitud")).to_have_attribute("inputmode", "decimal")
        page.get_by_role("button", name="Crear tarea").click()
        expect(page.locator("#tarea-codigo")).to_have_text("COMA-1")
        tarea = requests.get(board_server.url + "/api/v1/tasks?q=COMA-1", headers=build.headers(sup), timeout=10).json()["items"][0]
        assert (tarea["ubicacion_lat"], tarea["ubicacion_lng"]) == (40.4168, -3.7)
    finally:
        ctx.close()


def test_board_catches_up_after_its_socket_is_killed(browser: Browser, board_server: LiveServer, build: Builders, database_url: str, tmp_path: Path) -> None:
    sup = build.usuario(2)
    other = start_gunicorn(database_url, workers=1, tmp=tmp_path)
    ctx, page = _login(browser, board_server, sup.email)
    try:
        worker = int(subprocess.check_output(["pgrep", "-P", str(board_server.process.pid)]).split()[0])
        os.kill(worker, signal.SIGKILL)  # the board's socket dies with its worker
        expect(page.locator("#conexion")).not_to_have_attribute("data-estado", "conectado", timeout=5_000)
        created = requests.post(
            other.url + "/api/v1/tasks",
            json={"codigo": "MISSED-1", "titulo": "Creada sin conexión", "tipo": "vigilancia"},
            headers=build.headers(sup),
            timeout=10,
        )
        assert created.status_code == 201
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=15_000)
        expect(_card(page, "programada", created.json()["id"])).to_be_visible(timeout=5_000)
    finally:
        ctx.close()
        stop_gunicorn(other)


def test_efectivo_sees_only_their_own_tareas(browser: Browser, board_server: LiveServer, build: Builders) -> None:
    sup, user = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=user.id)
    mine, other = build.tarea(sup, titulo="Mi patrulla asignada"), build.tarea(sup, titulo="Tarea ajena secreta")
    build.asignacion(mine, efectivo)
    ctx, page = _login(browser, board_server, user.email)
    try:
        expect(_card(page, "programada", mine.id)).to_be_visible()
        expect(page.locator(f'[data-tarea-id="{other.id}"]')).to_have_count(0)
        expect(page.get_by_text("Tarea ajena secreta")).to_have_count(0)
        assert page.get_by_role("link", name="Nueva tarea").count() == 0
        page.screenshot(path=str(SCREENSHOTS / "tablero-efectivo.png"), full_page=True)
    finally:
        ctx.close()


def test_user_text_is_rendered_as_text(browser: Browser, board_server: LiveServer, build: Builders) -> None:
    sup = build.usuario(2)
    tarea = build.tarea(sup, titulo=XSS, descripcion=XSS)
    ctx, page = _login(browser, board_server, sup.email)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        expect(_card(page, "programada", tarea.id).locator(".titulo")).to_have_text(XSS)
        assert page.locator(".tarjeta img").count() == 0
        page.goto(f"/tareas/{tarea.id}")
        expect(page.locator("#tarea-titulo")).to_have_text(XSS)
        expect(page.locator("#tarea-descripcion")).to_have_text(XSS)
        time.sleep(0.3)
        assert dialogs == []
        page.screenshot(path=str(SCREENSHOTS / "tarea-xss.png"), full_page=True)
    finally:
        ctx.close()


def test_map_and_admin_pages_render_without_tiles(browser: Browser, board_server: LiveServer, build: Builders) -> None:
    admin = build.usuario(3)
    build.efectivo(nombre="Agente Visible", lat=40.41, lon=-3.70)
    ctx, page = _login(browser, board_server, admin.email)
    try:
        page.goto("/mapa")
        expect(page.locator("#posiciones li").first).to_contain_text("Agente Visible")
        page.screenshot(path=str(SCREENSHOTS / "mapa.png"))
        page.goto("/usuarios")
        expect(page.locator("#usuarios tr").first).to_be_visible()
        page.goto("/efectivos")
        expect(page.get_by_text("Agente Visible")).to_be_visible()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Saltar al contenido"
    finally:
        ctx.close()
