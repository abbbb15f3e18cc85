"""Live pages whose reloads overtake each other: the newest request's answer is the one left on screen (Playwright, real gunicorn)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from playwright.sync_api import Browser, Page, Playwright, Route, expect

from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer
from tests.support.browser import logged_in, server_without_tiles_fixture

pytestmark = pytest.mark.slow

server = server_without_tiles_fixture("server")


class LateAnswers:
    """Holds back the answer to the next request ``wanted`` picks: the server answers it at once (its state then),
    and the page receives that answer only when the test releases it, after newer requests were answered."""

    def __init__(self, page: Page, pattern: str, wanted: Callable[[str], bool]) -> None:
        self.page = page
        self.wanted = wanted
        self.held: list[tuple[Route, object]] = []
        self.armed = True
        page.route(pattern, self._handle)

    def _handle(self, route: Route) -> None:
        if self.armed and self.wanted(route.request.url):
            self.armed = False
            self.held.append((route, route.fetch()))
        else:
            route.continue_()

    def wait_held(self) -> None:
        for _ in range(200):
            if self.held:
                return
            self.page.wait_for_timeout(50)
        raise AssertionError("the page never sent the request to hold back")

    def release(self) -> None:
        route, answer = self.held.pop()
        route.fulfill(response=answer)  # type: ignore[arg-type]
        self.page.wait_for_timeout(500)  # time for the page to read it and, on the old code, to render it


def _api(server: LiveServer, build: Builders, who, method: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
    return requests.request(method, server.url + path, headers=build.headers(who, **kwargs.pop("headers", {})), timeout=30, **kwargs)


def test_a_paged_list_shows_the_page_it_asked_for_last(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """A live reload of page 2 under the new filter, answered after the filter's own first page, used to leave
    "1 en total · del 1 al 0" and an empty table on screen."""
    sup = build.usuario(2)
    for n in range(55):
        build.efectivo(codigo_interno=f"LOTE-{n:03d}", nombre=f"Agente Lote {n}")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        page.get_by_role("button", name="Siguiente").click()
        expect(page.locator("#total")).to_have_text("55 en total · del 51 al 55")
        late = LateAnswers(page, "**/api/v1/efectivos?*", lambda url: "q=LOTE-007" in url and "offset=50" in url)
        page.get_by_label("Buscar").fill("LOTE-007")
        # Someone else's change reaches the page live: it reloads the page it is on, with the filter typed so far.
        assert _api(server, build, sup, "POST", "/api/v1/efectivos", json={"codigo_interno": "OTRO-001", "nombre": "Agente Otro"}).status_code == 201
        late.wait_held()
        page.get_by_role("button", name="Filtrar").click()
        expect(page.locator("#total")).to_have_text("1 en total · del 1 al 1")
        late.release()
        expect(page.locator("#total")).to_have_text("1 en total · del 1 al 1")
        expect(page.locator("#efectivos tr")).to_have_count(1)
        expect(page.locator("#pagina")).to_have_text("Página 1 de 1")


def test_a_tarea_page_keeps_the_newest_version_and_its_etag(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Two changes in a row reload the page twice; the first answer arriving last used to put the older title
    back on screen and, with it, the older ETag, so the operator's next action failed with 412."""
    sup = build.usuario(2)
    tarea = build.tarea(sup, titulo="Ronda inicial")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing=f"/tareas/{tarea.id}") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        late = LateAnswers(page, f"**/api/v1/tasks/{tarea.id}", lambda url: url.endswith(f"/api/v1/tasks/{tarea.id}"))
        assert _api(server, build, sup, "PATCH", f"/api/v1/tasks/{tarea.id}", json={"titulo": "Ronda primera"}).status_code == 200
        late.wait_held()  # the page asked after the first change; the server answered version 2
        assert _api(server, build, sup, "PATCH", f"/api/v1/tasks/{tarea.id}", json={"titulo": "Ronda segunda"}).status_code == 200
        expect(page.locator("#tarea-titulo")).to_have_text("Ronda segunda")
        late.release()
        expect(page.locator("#tarea-titulo")).to_have_text("Ronda segunda")
        page.get_by_role("button", name="Pasar a En curso").click()
        expect(page.locator("#tarea-estado")).to_have_text("En curso")
        estado = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()["estado"]
        assert estado == "en_curso"


def test_an_answer_is_dropped_only_when_a_newer_one_was_shown(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The pages' rule itself (api.newestOnly), in the browser: while requests start faster than answers come back, each
    answer newer than the one on screen is still shown (dropping every answer that a newer request had overtaken left
    a busy map or board never redrawn); only an answer older than one already shown is dropped."""
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        script = page.locator("script[type=module]").first.get_attribute("src")
        assert script is not None
        api_js = script.rsplit("/", 1)[0] + "/api.js"
        verdicts = page.evaluate(
            """async (path) => {
                const { newestOnly } = await import(path);
                const begin = newestOnly();
                const one = begin(), two = begin();      // two requests out, frames faster than answers
                const three = begin();
                const first = one();                      // the oldest answers first: nothing newer shown yet
                const second = two();                     // newer than what is shown: shown
                const fourth = begin();
                const fifth = begin();
                return [first, second, fifth(), three(), fourth()];  // the newest shown; the two it overtook dropped
            }""",
            api_js,
        )
        assert verdicts == [False, False, False, True, True]


def _released_twice(server: LiveServer, build: Builders):  # type: ignore[no-untyped-def]
    """An officer taken off two tareas: two release notices waiting on their phone, newest last."""
    sup = build.usuario(2)
    officer = build.usuario(1, nombre="Elena", apellido="Campo")
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Elena")
    tareas = [build.tarea(sup, titulo=f"Ronda {n}", tipo="vigilancia") for n in range(2)]
    for tarea in tareas:  # one at a time: an efectivo is not booked on overlapping tareas
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [efectivo.id]}).status_code == 200
        assert _api(server, build, sup, "DELETE", f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}").status_code == 200
    avisos = _api(server, build, officer, "GET", "/api/v1/notificaciones?causa=desasignacion").json()["items"]
    return officer, tareas, {n["tarea_id"]: n["id"] for n in avisos}


def _reload_from_the_ledger(page: Page) -> None:
    # Coverage coming back makes /mi send its outbox and read everything again, the ledger included.
    page.evaluate("window.dispatchEvent(new Event('online'))")


def test_a_release_notice_read_elsewhere_is_not_put_back_by_an_older_ledger_answer(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The ledger read that started before the notice was read on another device, answered after its
    notification_read frame, used to show the notice again (and "Entendido" to mark it read a second time)."""
    officer, tareas, avisos = _released_twice(server, build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        aviso = page.get_by_role("alert").filter(has_text="Ya no tiene esta tarea")
        for tarea in tareas:
            expect(aviso).to_contain_text(f"Desasignado: {tarea.codigo}")
        late = LateAnswers(page, "**/api/v1/notificaciones?*", lambda url: "causa=desasignacion" in url and "no_leidas=true" in url)
        _reload_from_the_ledger(page)
        late.wait_held()  # the server answered with both notices unread
        leida = _api(server, build, officer, "POST", f"/api/v1/notificaciones/{avisos[tareas[0].id]}/ack", json={"respuesta": "leida"})
        assert leida.status_code == 200
        expect(aviso).not_to_contain_text(f"Desasignado: {tareas[0].codigo}")
        late.release()
        expect(aviso).not_to_contain_text(f"Desasignado: {tareas[0].codigo}")
        expect(aviso).to_contain_text(f"Desasignado: {tareas[1].codigo}")


def test_a_release_notice_read_while_its_frame_was_missed_leaves_at_the_next_ledger_read(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """A phone that missed the notification_read frame (asleep past the replay window: the stream then says
    resync_required and replays nothing) used to keep the notice until "Entendido"; the ledger now says it was read."""
    officer, tareas, avisos = _released_twice(server, build)
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "movil", landing="/mi") as (_, page):
        dropped: list[str] = []

        def without_reads(ws) -> None:  # type: ignore[no-untyped-def]
            upstream = ws.connect_to_server()
            upstream.on_message(lambda message: dropped.append(message) if "notification_read" in str(message) else ws.send(message))

        page.route_web_socket("**/ws/connect*", without_reads)
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        aviso = page.get_by_role("alert").filter(has_text="Ya no tiene esta tarea")
        for tarea in tareas:
            expect(aviso).to_contain_text(f"Desasignado: {tarea.codigo}")
        leida = _api(server, build, officer, "POST", f"/api/v1/notificaciones/{avisos[tareas[0].id]}/ack", json={"respuesta": "leida"})
        assert leida.status_code == 200
        _reload_from_the_ledger(page)  # (a live reload still on its way may read the ledger first: the same path)
        expect(aviso).not_to_contain_text(f"Desasignado: {tareas[0].codigo}")
        expect(aviso).to_contain_text(f"Desasignado: {tareas[1].codigo}")
        for _ in range(100):  # the frame was sent (and dropped), so the page could only have learnt it from the ledger
            if dropped:
                break
            page.wait_for_timeout(50)
        assert dropped, "no notification_read frame was dropped: the test did not make the page miss it"
