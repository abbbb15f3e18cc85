"""Shared Playwright helpers for the browser suites: Chromium launch, viewports, login, axe-core and screenshots."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, expect, sync_playwright

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Puerta del Sol, Madrid: where the granted geolocation puts every phone.
SOL = {"latitude": 40.4169, "longitude": -3.7035, "accuracy": 10}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1366, "height": 900}}
SIZES = ("escritorio", "movil")
# /mi's notice of assignments taken off the officer (causa desasignacion), by its heading: its accessible name.
RELEASE_NOTICE = re.compile(r"^(Asignación retirada|\d+ asignaciones retiradas)$")
# Playwright's default of 5 s for an expect() assumes an idle machine. Creating a usuario or resetting a password
# hashes it (argon2, a few seconds at a load of 10 on two cores) before the page can redraw: with the browser's CPU
# slowed sixfold, the new row and the reset's notice came later than that. An expect that is about latency passes
# its own timeout.
expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    """Playwright for a test module (this module is a plugin of tests/conftest.py: any test may ask for it)."""
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(pw: Playwright) -> Iterator[Browser]:
    launched = launch(pw)
    yield launched
    launched.close()


def launch(playwright: Playwright) -> Browser:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is required for the browser tests: apt-get install chromium (.ci/run does); looked for {CHROMIUM}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def context_options(playwright: Playwright, size: str, base_url: str) -> dict[str, Any]:
    """Desktop, or a phone by Playwright's device emulation (touch, mobile UA, DPR), with geolocation granted."""
    base: dict[str, Any] = dict(DESKTOP) if size == "escritorio" else dict(playwright.devices["Pixel 7"])
    base.pop("default_browser_type", None)
    return base | {"base_url": base_url, "geolocation": SOL, "permissions": ["geolocation"], "locale": "es-ES"}


@contextmanager
def server_without_tiles(database_url: str, tmp: Path) -> Iterator[LiveServer]:
    """One gunicorn worker whose map tiles point at an address that refuses at once: every map must stay
    usable without them."""
    from tests.conftest import start_gunicorn, stop_gunicorn

    live = start_gunicorn(database_url, workers=1, tmp=tmp, extra_env={"MAP_TILE_URL": "http://127.0.0.1:9/{z}/{x}/{y}.png"})
    try:
        yield live
    finally:
        stop_gunicorn(live)


def server_without_tiles_fixture(name: str) -> Any:
    """A module-scoped fixture called ``name`` serving ``server_without_tiles`` (assign it to ``name`` in the module)."""

    @pytest.fixture(scope="module", name=name)
    def live_server_without_tiles(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
        with server_without_tiles(database_url, tmp_path_factory.mktemp(name)) as live:
            yield live

    return live_server_without_tiles


@contextmanager
def logged_in(
    browser: Browser,
    playwright: Playwright,
    base_url: str,
    email: str,
    password: str,
    size: str = "escritorio",
    landing: str = "/",
    service_workers: Literal["allow", "block"] = "allow",
) -> Iterator[tuple[BrowserContext, Page]]:
    context = browser.new_context(**context_options(playwright, size, base_url), service_workers=service_workers)
    try:
        page = context.new_page()
        page.goto("/login?next=" + landing)
        page.get_by_label("Correo electrónico").fill(email)
        page.get_by_label("Contraseña").fill(password)
        page.get_by_role("button", name="Entrar").click()
        page.wait_for_url(base_url + landing)
        yield context, page
    finally:
        context.close()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page as it is now (axe runs over CDP, so the CSP does not block it)."""
    source = AXE.read_text()
    page.evaluate(source)
    result = page.evaluate("async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))")
    violations = json.loads(result)["violations"]
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def shot(page: Page, name: str, size: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{size}.png"), full_page=True)


UNAVAILABLE: dict[str, Any] = {"status": 503, "content_type": "application/problem+json", "body": '{"title": "Service Unavailable", "status": 503}'}


class Held:
    """Requests to ``pattern`` held back until ``release()``; from then on they pass (the ``released`` flag first:
    after ``unroute`` Playwright would continue a held one itself, and a second continue raises)."""

    def __init__(self, page: Page, pattern: str, answer: Callable[[Route], None] | None = None) -> None:
        self.page, self.pattern, self.answer = page, re.compile(pattern), answer
        self.routes: list[Route] = []
        self.released = False
        page.route(self.pattern, self._hold)

    def _hold(self, route: Route) -> None:
        if self.released:
            route.continue_()
        elif self.answer is not None:
            self.answer(route)
        else:
            self.routes.append(route)

    def wait(self) -> None:
        deadline = time.monotonic() + 15
        while not self.routes:
            assert time.monotonic() < deadline, f"no request to {self.pattern.pattern} was held"
            self.page.wait_for_timeout(50)

    def release(self) -> None:
        self.released = True
        for route in self.routes:
            route.continue_()
        self.page.unroute(self.pattern)


def fail_once(page: Page, pattern: str) -> None:
    """The first request to ``pattern`` answered 503 (a moment's outage); the next ones reach the server."""
    failed: list[bool] = []

    def answer(route: Route) -> None:
        if failed:
            route.continue_()
        else:
            failed.append(True)
            route.fulfill(**UNAVAILABLE)

    page.route(re.compile(pattern), answer)
