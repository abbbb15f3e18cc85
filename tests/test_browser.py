"""Operators and field staff doing the whole job from a browser: Playwright in Chromium, desktop and phone, real gunicorn."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer, start_gunicorn, stop_gunicorn
from tests.support.browser import SIZES, axe_violations, context_options, launch, logged_in, shot

pytestmark = pytest.mark.slow
MARKUP = '<img src=x class=pwn><a class=pwn href="#x">a</a><b class=pwn>b</b>'


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(pw: Playwright) -> Iterator[Browser]:
    launched = launch(pw)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # Tiles point at an address that refuses at once: every map must stay usable without them.
    live = start_gunicorn(database_url, workers=1, tmp=tmp_path_factory.mktemp("browser"), extra_env={"MAP_TILE_URL": "http://127.0.0.1:9/{z}/{x}/{y}.png"})
    yield live
    stop_gunicorn(live)


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
def test_every_page_loads_without_errors_passes_axe_and_is_photographed(browser: Browser, pw: Playwright, server: LiveServer, build: Builders, size: str) -> None:
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
