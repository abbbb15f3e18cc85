"""Live pages whose reloads and frames overtake each other: what is left on screen is the newest state (Playwright, real gunicorn)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, Playwright, Route, WebSocketRoute, expect

from tests.builders import PASSWORD, Builders
from tests.conftest import LiveServer
from tests.support.browser import RELEASE_NOTICE, logged_in, server_without_tiles_fixture

pytestmark = pytest.mark.slow

server = server_without_tiles_fixture("server")


def _wait_until_held(page: Page, held: list[Any], never: str) -> None:
    for _ in range(200):
        if held:
            return
        page.wait_for_timeout(50)
    raise AssertionError(never)


class LateAnswers:
    """Holds back the answer to the next request ``wanted`` picks: the server answers it at once (its state then),
    and the page receives that answer only when the test releases it, after newer requests were answered."""

    def __init__(self, page: Page, pattern: str, wanted: Callable[[str], bool]) -> None:
        self.page = page
        self.wanted = wanted
        self.held: list[tuple[Route, object]] = []
        self.passed: list[str] = []
        self.armed = True
        page.route(pattern, self._handle)

    def _handle(self, route: Route) -> None:
        self.passed.append(route.request.url)
        if self.armed and self.wanted(route.request.url):
            self.armed = False
            self.held.append((route, route.fetch()))
        else:
            route.continue_()

    def wait_held(self) -> None:
        # What did pass, should it ever fail again: the wanted request not sent, or sent and not recognised.
        _wait_until_held(self.page, self.held, f"the page never sent the request to hold back; it sent {self.passed}")

    def release(self) -> None:
        route, answer = self.held.pop()
        route.fulfill(response=answer)  # type: ignore[arg-type]
        self.page.wait_for_timeout(500)  # time for the page to read it and, on the old code, to render it


class SecondPage:
    """Holds back the first request for a page past the first of a list (``pattern``) before it reaches the server,
    so the list can change between two page reads; records the offset of every page of it the page asks for."""

    def __init__(self, page: Page, pattern: str) -> None:
        self.page = page
        self.held: list[Route] = []
        self.armed = True
        self.offsets: list[int] = []
        page.route(pattern, self._handle)

    def _handle(self, route: Route) -> None:
        paged = re.search(r"[?&]offset=(\d+)", route.request.url)
        if paged is None:  # a single read beside the list (the board's latest closed tareas)
            route.continue_()
            return
        offset = int(paged[1])
        self.offsets.append(offset)
        if offset > 0 and self.armed:
            self.armed = False
            self.held.append(route)  # asked, and not yet sent to the server
        else:
            route.continue_()

    def wait_held(self) -> None:
        _wait_until_held(self.page, self.held, "the page never asked for a second page")

    def release(self) -> None:
        self.held.pop().continue_()


class Stream:
    """The page's live socket, through the test: every frame passes except those ``drop`` picks, and the test can
    send the page what the server sends a client that slept past the replay window (resync_required)."""

    def __init__(self, page: Page, drop: Callable[[dict[str, Any]], bool] = lambda frame: False) -> None:
        self.drop = drop
        self.dropped: list[dict[str, Any]] = []
        self.sockets: list[WebSocketRoute] = []
        self.last_id = 0
        page.route_web_socket("**/ws/connect*", self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()
        self.sockets.append(ws)

        def down(message: str | bytes) -> None:
            frame = json.loads(message)
            if isinstance(frame.get("id"), int):
                self.last_id = max(self.last_id, frame["id"])
            if self.drop(frame):
                self.dropped.append(frame)
            else:
                ws.send(message)

        upstream.on_message(down)

    def resync(self) -> None:
        self.sockets[-1].send(json.dumps({"event_type": "resync_required", "data": {"last_event_id": self.last_id}}))


def _phone(browser: Browser, pw: Playwright, server: LiveServer, email: str) -> Any:
    """An officer's /mi, without its service worker. The worker installs after the first page has loaded and then
    claims the page, at a moment that depends on the machine's speed (on a slow one, after a reload, in the middle of
    a test). Playwright's route() does not intercept what a service worker intercepts, and its documentation advises
    blocking workers where requests are routed; a held-back read of these tests once never reached its route in
    CI. The worker never answers these reads (API calls go to the network); it is tested in test_browser.py."""
    return logged_in(browser, pw, server.url, email, PASSWORD, "movil", landing="/mi", service_workers="block")


def _record_frames(page: Page) -> None:
    """From the next navigation on, the page keeps the type of every live frame its scripts were handed."""
    page.add_init_script("addEventListener('gad:frame', (e) => (window.gadFrames ??= []).push(e.detail.frame.event_type))")


def _frame_reached(page: Page, event_type: str) -> None:
    page.wait_for_function("(t) => (window.gadFrames ?? []).includes(t)", arg=event_type)


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


def _reads_and_positions(frame: dict[str, Any]) -> bool:
    # The read frames the phone misses; and its own position fixes, whose frames reload the page (and read the
    # ledger) whenever geolocation answers: ledger reads the test did not ask for, held back in its place.
    return frame.get("event_type") in ("notification_read", "efectivo_location_update")


def _both_notices_shown(page: Page, tareas: list[Any]) -> Locator:
    """The phone, live, showing both release notices; the notice is returned."""
    expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
    aviso = page.get_by_role("alert", name=RELEASE_NOTICE)
    for tarea in tareas:
        expect(aviso).to_contain_text(f"Desasignado: {tarea.codigo}")
    return aviso


def _reload_from_the_ledger(page: Page) -> None:
    # Coverage coming back makes /mi send its outbox and read everything again, the ledger included.
    page.evaluate("window.dispatchEvent(new Event('online'))")


def test_a_release_notice_read_elsewhere_is_not_put_back_by_an_older_ledger_answer(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The ledger read that started before the notice was read on another device, answered after its
    notification_read frame, used to show the notice again (and "Entendido" to mark it read a second time)."""
    officer, tareas, avisos = _released_twice(server, build)
    with _phone(browser, pw, server, officer.email) as (_, page):
        aviso = _both_notices_shown(page, tareas)
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
    with _phone(browser, pw, server, officer.email) as (_, page):
        stream = Stream(page, drop=_reads_and_positions)
        page.reload()
        aviso = _both_notices_shown(page, tareas)
        leida = _api(server, build, officer, "POST", f"/api/v1/notificaciones/{avisos[tareas[0].id]}/ack", json={"respuesta": "leida"})
        assert leida.status_code == 200
        _reload_from_the_ledger(page)  # (a live reload still on its way may read the ledger first: the same path)
        expect(aviso).not_to_contain_text(f"Desasignado: {tareas[0].codigo}")
        expect(aviso).to_contain_text(f"Desasignado: {tareas[1].codigo}")
        for _ in range(100):  # the frame was sent (and dropped), so the page could only have learnt it from the ledger
            if any(frame.get("event_type") == "notification_read" for frame in stream.dropped):
                break
            page.wait_for_timeout(50)
        else:
            raise AssertionError("no notification_read frame was dropped: the test did not make the page miss it")


def test_a_release_notice_a_newer_ledger_read_took_off_is_not_put_back_by_an_older_one(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Two ledger reads in flight, the notice's read frame missed: the newer read took the notice off, and the older
    one, answered last, used to show it again (and "Entendido" to mark it read a second time)."""
    officer, tareas, avisos = _released_twice(server, build)
    with _phone(browser, pw, server, officer.email) as (_, page):
        Stream(page, drop=_reads_and_positions)
        page.reload()
        aviso = _both_notices_shown(page, tareas)
        late = LateAnswers(page, "**/api/v1/notificaciones?*", lambda url: "causa=desasignacion" in url and "no_leidas=true" in url)
        _reload_from_the_ledger(page)
        late.wait_held()  # the older read: both notices unread
        leida = _api(server, build, officer, "POST", f"/api/v1/notificaciones/{avisos[tareas[0].id]}/ack", json={"respuesta": "leida"})
        assert leida.status_code == 200
        _reload_from_the_ledger(page)  # the newer read no longer lists it
        expect(aviso).not_to_contain_text(f"Desasignado: {tareas[0].codigo}")
        late.release()
        expect(aviso).not_to_contain_text(f"Desasignado: {tareas[0].codigo}")
        expect(aviso).to_contain_text(f"Desasignado: {tareas[1].codigo}")


def test_open_alerts_read_before_a_tally_and_a_closing_keep_what_the_frames_said(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The tray's list of open alerts, read as the page opened and answered after the frames that tallied one alert
    and closed another, used to put the tally back to "0 / 1" and the closed alert back among the open ones."""
    sup = build.usuario(2)
    officer = build.usuario(1, nombre="Marta", apellido="Muelle")
    alertas = {}
    for texto in ("Corte de tráfico en el puente", "Refuerzos en la lonja"):
        created = _api(
            server, build, sup, "POST", "/api/v1/alertas", json={"tipo": "aviso", "texto": texto, "destino": "usuarios", "usuario_ids": [officer.id]}
        )
        assert created.status_code == 201, created.text
        alertas[texto] = created.json()["id"]
    puente, lonja = alertas.values()
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        _record_frames(page)
        late = LateAnswers(page, "**/api/v1/alertas?*", lambda url: "abiertas=true" in url)
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        late.wait_held()  # both open, nobody has confirmed
        assert _api(server, build, sup, "POST", f"/api/v1/alertas/{puente}/cerrar").status_code == 200
        aviso = _api(server, build, officer, "GET", "/api/v1/notificaciones?causa=alerta").json()["items"]
        confirm = next(n["id"] for n in aviso if n["alerta_id"] == lonja)
        assert _api(server, build, officer, "POST", f"/api/v1/notificaciones/{confirm}/ack", json={"respuesta": "acepto"}).status_code == 200
        _frame_reached(page, "alert_closed")
        _frame_reached(page, "alert_tally")
        late.release()
        page.get_by_role("button", name="Notificaciones").click()
        abiertas = page.locator("#alertas-abiertas .alerta")
        expect(abiertas).to_have_count(1)
        expect(abiertas).to_contain_text("Refuerzos en la lonja")
        expect(abiertas.locator(".recuento")).to_have_text("1 / 1 confirmados")


def test_the_tray_reads_again_when_the_stream_says_resync(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """A page asleep past the replay window is told resync_required and the frames it missed are never sent: the page
    reloaded its own data, but the tray kept counting as unread a notification read on another device."""
    officer = build.usuario(1)
    unread = build.notificacion(officer, requiere_respuesta=False, titulo="Cambio de turno")
    with logged_in(browser, pw, server.url, officer.email, PASSWORD, "escritorio", landing="/tareas") as (_, page):
        stream = Stream(page, drop=lambda frame: frame.get("event_type") == "notification_read")
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        contador = page.locator("#bandeja-contador")
        expect(contador).to_have_text("1")
        assert _api(server, build, officer, "POST", f"/api/v1/notificaciones/{unread.id}/ack", json={"respuesta": "leida"}).status_code == 200
        page.wait_for_timeout(500)
        expect(contador).to_have_text("1")  # the frame never came
        stream.resync()
        expect(contador).to_have_text("0")


def test_a_board_resync_keeps_the_cards_frames_added_and_took_off_meanwhile(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The board's full reload after resync_required, answered after the frames of a tarea deleted and one created
    meanwhile, used to put the deleted card back and take the new one off, until the next reload."""
    sup = build.usuario(3)  # deleting a tarea is an administrador's
    borrada = build.tarea(sup, titulo="Ronda que se anula")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/") as (_, page):
        stream = Stream(page)
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        tarjeta = page.locator(f'.tarjeta[data-tarea-id="{borrada.id}"]')
        expect(tarjeta).to_have_count(1)
        late = LateAnswers(page, "**/api/v1/tasks?*", lambda url: "sort=-created_at" in url)
        stream.resync()
        late.wait_held()  # the list as it was: the first tarea, not the second
        assert _api(server, build, sup, "DELETE", f"/api/v1/tasks/{borrada.id}").status_code in (200, 204)
        created = _api(server, build, sup, "POST", "/api/v1/tasks", json={"codigo": "NUEVA-1", "titulo": "Ronda recién creada", "tipo": "patrullaje"})
        assert created.status_code == 201, created.text
        nueva = page.locator(f'.tarjeta[data-tarea-id="{created.json()["id"]}"]')
        expect(tarjeta).to_have_count(0)
        expect(nueva).to_have_count(1)
        late.release()
        expect(tarjeta).to_have_count(0)
        expect(nueva).to_have_count(1)


def test_the_board_marks_an_answer_given_while_its_marks_were_read(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The board's marks listened for answers only once their ledger read was answered: an answer whose frame came
    while that read was on its way was never marked on the card."""
    sup = build.usuario(2)
    officer = build.usuario(1, nombre="Iker", apellido="Ibarra")
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Iker")
    tarea = build.tarea(sup, titulo="Vigilancia del puerto", tipo="vigilancia")
    assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [efectivo.id]}).status_code == 200
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        late = LateAnswers(page, "**/api/v1/notificaciones?*", lambda url: "todos=true" in url)
        page.goto("/")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        late.wait_held()  # read before the answer
        pregunta = _api(server, build, officer, "GET", f"/api/v1/notificaciones?pendientes=true&tarea_id={tarea.id}").json()["items"][0]
        assert _api(server, build, officer, "POST", f"/api/v1/notificaciones/{pregunta['id']}/ack", json={"respuesta": "acepto"}).status_code == 200
        expect(page.locator("#feed")).to_contain_text("Respuesta")  # the board has the frame
        late.release()
        expect(page.locator(f'.tarjeta[data-tarea-id="{tarea.id}"] .marca-aceptada')).to_have_text("✓ Acepta: Iker Ibarra")


def test_the_board_feed_keeps_a_frame_that_came_while_the_log_was_read(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The feed's reload after resync_required, answered after the frame of a change made meanwhile, used to replace
    the feed with the older log and lose that change from "últimos eventos"."""
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/") as (_, page):
        stream = Stream(page)
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        late = LateAnswers(page, "**/api/v1/eventos/recientes*", lambda url: True)
        stream.resync()
        late.wait_held()
        created = _api(server, build, sup, "POST", "/api/v1/tasks", json={"codigo": "FEED-1", "titulo": "Ronda del feed", "tipo": "patrullaje"})
        assert created.status_code == 201, created.text
        entrada = page.locator("#feed li").filter(has_text="FEED-1")
        expect(entrada).to_have_count(1)
        late.release()
        expect(entrada).to_have_count(1)


def test_the_board_feed_lists_an_event_once_when_the_log_and_the_resume_both_have_it(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Coming back to the board from another page, the socket resumes from the last event that page saw: an event
    made in between is in the log the feed opens with and in the replay, and used to be listed twice."""
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/tareas") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        page.goto("/informes")  # no live socket of its own: the resume point stays where /tareas left it
        created = _api(server, build, sup, "POST", "/api/v1/tasks", json={"codigo": "DOBLE-1", "titulo": "Ronda repetida", "tipo": "patrullaje"})
        assert created.status_code == 201, created.text
        _record_frames(page)
        page.goto("/")
        _frame_reached(page, "task_created")  # replayed, after the feed was read from the log
        expect(page.locator("#feed li").filter(has_text="DOBLE-1")).to_have_count(1)


def test_the_planning_week_drops_a_booking_its_tarea_no_longer_holds(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The planning reloaded on (un)assignments only: a tarea cancelled or moved frees or moves its bookings with no
    task_unassigned frame, and the week went on showing them where they were."""
    sup = build.usuario(2)
    ana = build.efectivo(unidad="Móvil 7", nombre="Ana Reservada")
    madrid = ZoneInfo("Europe/Madrid")  # the planning's zone (ZONA_HORARIA); the page opens on this week
    hoy = datetime.now(madrid).date()
    miercoles = datetime.combine(hoy - timedelta(days=hoy.weekday() - 2), time(10), madrid)
    tareas = [
        build.tarea(sup, codigo=f"RES-{n}", inicio_programado=miercoles + timedelta(hours=n), fin_programado=miercoles + timedelta(hours=n, minutes=30))
        for n in (1, 2)
    ]
    for tarea in tareas:
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [ana.id]}).status_code == 200
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/planificacion") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(page.locator("body")).to_have_attribute("data-listo", "true")
        page.locator("#unidad").select_option("Móvil 7")
        fila = page.locator(f'tr[data-efectivo-id="{ana.id}"]')
        for tarea in tareas:
            expect(fila.locator(f'.bloque.reserva[data-tarea-id="{tarea.id}"]')).to_have_count(1)
        assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tareas[0].id}/estado", json={"estado": "cancelada"}).status_code == 200
        expect(fila.locator(f'.bloque.reserva[data-tarea-id="{tareas[0].id}"]')).to_have_count(0)
        expect(fila.locator(f'.bloque.reserva[data-tarea-id="{tareas[1].id}"]')).to_have_count(1)


def test_the_phone_keeps_a_newer_availability_than_its_own_late_answer(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The officer's "No disponible" answered after the supervisor set them back to disponible (its frame reloaded
    the page first) used to press "No disponible" again: the phone said what the central no longer had."""
    sup = build.usuario(2)
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Nuria")
    with _phone(browser, pw, server, officer.email) as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        late = LateAnswers(page, "**/api/v1/efectivos/*/disponibilidad", lambda url: True)
        page.get_by_role("button", name="No disponible").click()
        late.wait_held()  # applied on the server; its answer is on its way
        vuelta = _api(server, build, sup, "POST", f"/api/v1/efectivos/{efectivo.id}/disponibilidad", json={"estado": "disponible"})
        assert vuelta.status_code == 200, vuelta.text
        disponible = page.locator('#disponibilidad button[data-estado="disponible"]')
        expect(disponible).to_have_attribute("aria-pressed", "true")
        late.release()
        expect(disponible).to_have_attribute("aria-pressed", "true")
        expect(page.locator('#disponibilidad button[data-estado="no_disponible"]')).to_have_attribute("aria-pressed", "false")


def test_the_first_page_of_a_tab_gets_what_committed_between_its_reads_and_its_socket(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """A tab's first page read the board over REST and then connected without ``since``: a tarea (an emergency)
    created between those reads and the handshake was never delivered, and the board did not show it until
    something else made it reload. The page now resumes from the event log's head the server read before rendering."""
    sup = build.usuario(2)
    antes = build.tarea(sup, titulo="Ronda de antes")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (context, _):
        held: list[WebSocketRoute] = []
        tab = context.new_page()  # a new tab: nothing in its sessionStorage
        tab.route_web_socket("**/ws/connect*", lambda ws: held.append(ws))  # the handshake waits until the test lets it through
        tab.goto("/")
        expect(tab.locator(f'.tarjeta[data-tarea-id="{antes.id}"]')).to_have_count(1)  # its REST reads are done
        for _ in range(200):
            if held:
                break
            tab.wait_for_timeout(50)
        assert held, "the board never opened its live socket"
        created = _api(server, build, sup, "POST", "/api/v1/tasks", json={"codigo": "ENTRE-1", "titulo": "Ronda de entretanto", "tipo": "patrullaje"})
        assert created.status_code == 201, created.text
        held[0].connect_to_server()
        expect(tab.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(tab.locator(f'.tarjeta[data-tarea-id="{created.json()["id"]}"]')).to_have_count(1)


def test_a_list_reloads_while_position_frames_keep_coming(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Each frame restarted the list's 300 ms wait before reloading: under a steady stream of positions (one every
    100 ms here) the efectivos page never reloaded, and an efectivo created meanwhile never appeared."""
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        stream = Stream(page)
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        created = _api(server, build, sup, "POST", "/api/v1/efectivos", json={"codigo_interno": "NUEVO-001", "nombre": "Agente Nuevo"})
        assert created.status_code == 201, created.text
        fila = page.locator("#efectivos tr").filter(has_text="Agente Nuevo")
        for _ in range(60):  # six seconds of positions, as a busy unidad sends them
            position = {"id": stream.last_id, "event_type": "efectivo_location_update", "topic": "efectivos", "data": {"id": 0}}
            stream.sockets[-1].send(json.dumps(position))
            page.wait_for_timeout(100)
            if fila.count():
                break
        assert fila.count() == 1, "the list was not reloaded while the positions kept coming"


def _question_then_release_then_question_again(server: LiveServer, build: Builders, sup, efectivo, tarea) -> None:  # type: ignore[no-untyped-def]
    for path, method in ((f"/api/v1/tasks/{tarea.id}/efectivos", "POST"), (f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", "DELETE")):
        body = {"json": {"efectivo_ids": [efectivo.id]}} if method == "POST" else {}
        assert _api(server, build, sup, method, path, **body).status_code == 200
    assert _api(server, build, sup, "POST", f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [efectivo.id]}).status_code == 200


def test_a_replayed_release_does_not_take_away_the_question_of_the_assignment_after_it(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """Taken off a tarea and assigned to it again while the phone was away: the resume replays the release after the
    ledger has asked about the new assignment, and the release used to forget every question of that tarea, the
    new one too, which then was never asked again (and escalated to the supervisors unanswered)."""
    sup = build.usuario(2)
    officer = build.usuario(1, nombre="Elena", apellido="Campo")
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Elena")
    tarea = build.tarea(sup, titulo="Vigilancia del puerto", tipo="vigilancia")
    with _phone(browser, pw, server, officer.email) as (_, page):
        stream = Stream(page, drop=lambda frame: (frame.get("data") or {}).get("causa") == "desasignacion")
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        _question_then_release_then_question_again(server, build, sup, efectivo, tarea)
        alerta = page.locator("#alerta")
        expect(alerta).to_be_visible()
        expect(page.locator("#alerta-texto")).to_contain_text(tarea.codigo)
        for _ in range(100):
            if stream.dropped:
                break
            page.wait_for_timeout(50)
        [release] = stream.dropped
        page.wait_for_timeout(500)  # the first question, released, has been forgotten by the ledger reads by now
        stream.sockets[-1].send(json.dumps(release))  # as a resume replays it, after the ledger asked again
        expect(page.get_by_role("alert", name=RELEASE_NOTICE)).to_contain_text(f"Desasignado: {tarea.codigo}")
        expect(alerta).to_be_visible()
        expect(page.locator("#alerta-texto")).to_contain_text(tarea.codigo)


def test_a_release_notice_acknowledged_with_its_ack_still_queued_is_not_shown_again_after_a_reload(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """ "Entendido" while the ack could not be sent (it waits in the outbox): a reload read the notice as unread from
    the ledger and showed it again."""
    officer, tareas, _ = _released_twice(server, build)
    with _phone(browser, pw, server, officer.email) as (_, page):
        aviso = page.get_by_role("alert", name=RELEASE_NOTICE)
        expect(aviso).to_contain_text(f"Desasignado: {tareas[1].codigo}")
        page.route("**/api/v1/notificaciones/*/ack", lambda route: route.abort())  # the ack does not get through
        aviso.get_by_role("button", name="Entendido").click()
        expect(aviso).to_be_hidden()
        expect(page.locator("#cola-resumen")).not_to_have_text("Todo enviado.")
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(page.locator("#cola-resumen")).to_contain_text("2 acciones")  # both acks still queued
        page.wait_for_timeout(1000)  # the ledger has been read
        expect(aviso).to_be_hidden()


def test_the_board_feed_stays_newest_first_when_a_resume_replays_events_older_than_its_log(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The board's feed shows the log's 30 newest events; a resume from further back replays older ones too, and they
    used to go on top, older times above newer ones."""
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        since = page.evaluate("document.body.dataset.lastEventId")
        for n in range(40):
            created = _api(server, build, sup, "POST", "/api/v1/tasks", json={"codigo": f"FEED-{n:02d}", "titulo": f"Ronda {n}", "tipo": "patrullaje"})
            assert created.status_code == 201, created.text
        page.wait_for_timeout(500)  # the frames reached this page; what it stored is overwritten next
        page.evaluate("(since) => sessionStorage.setItem('gad:last-event-id', since)", since)  # a tab that was away
        page.goto("/")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        feed = page.locator("#feed [data-evento-id]")
        expect(feed.first).to_contain_text("FEED-39")
        page.wait_for_timeout(1000)  # the replay has been applied
        ids = [int(value) for value in feed.evaluate_all("(items) => items.map((item) => item.dataset.eventoId)")]
        assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))


def test_coalesced_reloads_never_overlap_and_never_miss_a_call(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """api.coalesced, in the browser: calls every 50 ms against a reload that takes 400 ms (a loaded server) start
    one reload at a time, where a timer per burst piled them up; and a call made during a run gets a run after it."""
    sup = build.usuario(2)
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        script = page.locator("script[type=module]").first.get_attribute("src")
        assert script is not None
        outcome = page.evaluate(
            """async (path) => {
                const { coalesced } = await import(path);
                let running = 0, most = 0, runs = 0, lastCall = 0, lastStart = 0;
                const reload = coalesced(async () => {
                    running += 1; runs += 1; most = Math.max(most, running); lastStart = performance.now();
                    await new Promise((resolve) => setTimeout(resolve, 400));
                    running -= 1;
                }, 100);
                for (let i = 0; i < 40; i++) {
                    reload(); lastCall = performance.now();
                    await new Promise((resolve) => setTimeout(resolve, 50));
                }
                await new Promise((resolve) => setTimeout(resolve, 1200));
                return { most, runs, lastRunAfterLastCall: lastStart > lastCall };
            }""",
            script.rsplit("/", 1)[0] + "/api.js",
        )
        assert outcome["most"] == 1
        assert outcome["runs"] >= 3  # it kept reloading through the burst
        assert outcome["lastRunAfterLastCall"]


@pytest.mark.parametrize("removed", [1, 30], ids=["one", "more_than_the_overlap"])
def test_a_list_read_page_by_page_leaves_out_no_item_when_others_leave_between_its_pages(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders, removed: int
) -> None:
    """api.fetchAll paged by offset: tareas deleted from the first page while the second was on its way moved every
    later one back, and the second page, asked at the old offset, began past the first it had never read; the board
    went without those cards until its next full reload (a tarea's frames reload that tarea only)."""
    sup, admin = build.usuario(2), build.usuario(3)
    tareas = [build.tarea(sup, titulo=f"Lote {n}") for n in range(230)]  # the board lists the newest first
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        second = SecondPage(page, "**/api/v1/tasks?*")
        page.goto("/")
        second.wait_held()
        for tarea in tareas[-removed:]:  # the newest: all on the first page, already read
            assert _api(server, build, admin, "DELETE", f"/api/v1/tasks/{tarea.id}").status_code == 204
        second.release()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        for tarea in tareas[-removed:]:  # read on the first page; their replayed task_deleted frames take them off
            expect(page.locator(f'.tarjeta[data-tarea-id="{tarea.id}"]')).to_have_count(0)
        for tarea in tareas[: 30 - removed + 1]:  # those that were past the first page: the oldest
            expect(page.locator(f'.tarjeta[data-tarea-id="{tarea.id}"]')).to_be_visible()
        expect(page.locator(".tarjeta[data-tarea-id]")).to_have_count(len(tareas) - removed)
        # Pages overlap by 20; past that, the second page holds nothing of the first and is asked again further back.
        assert second.offsets == ([0, 180] if removed == 1 else [0, 180, 0, 180])


def test_what_an_operator_types_before_the_tarea_arrives_is_kept(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The tarea page opens its edit form before the tarea's answer arrives; the answer filled every field, and what
    the operator had typed meanwhile was gone — the save then sent the old title and said nothing."""
    sup = build.usuario(2)
    tarea = build.tarea(sup, titulo="Vigilancia del museo", notas="Puerta norte")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        late = LateAnswers(page, "**/api/v1/tasks/*", lambda url: url.split("?")[0].endswith(f"/api/v1/tasks/{tarea.id}"))
        page.goto(f"/tareas/{tarea.id}")
        late.wait_held()
        page.get_by_text("Editar datos").click()
        page.get_by_label("Título").fill("   ")
        late.release()
        expect(page.get_by_label("Notas")).to_have_value("Puerta norte")  # the answer filled what was not typed in
        expect(page.get_by_label("Título")).to_have_value("   ")
        page.get_by_role("button", name="Guardar cambios").click()
        expect(page.locator("#form-tarea-error-titulo")).to_have_text("Este campo no puede quedar vacío.")
    saved = _api(server, build, sup, "GET", f"/api/v1/tasks/{tarea.id}").json()
    assert (saved["titulo"], saved["version"]) == ("Vigilancia del museo", 1)


def test_the_phone_page_loads_beside_an_api_module_cached_before_it_had_pages(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The /mi service worker refreshes the shell's files one by one: a phone can hold the new mi.js beside an api.js
    cached before ``pages`` existed. A named import of it failed the whole module, and /mi showed nothing."""
    sup = build.usuario(2)
    build.efectivo(usuario_id=sup.id, codigo_interno="SUP-002", nombre="Agente Anterior")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "movil", landing="/efectivos") as (_, page):

        def older_api(route: Route) -> None:
            current = route.fetch().text()
            assert "export async function* pages(" in current
            route.fulfill(status=200, content_type="text/javascript", body=current.replace("export async function* pages(", "async function* pages("))

        page.route("**/static/js/api.js*", older_api)
        page.goto("/mi")
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(page.locator("#mi-efectivo")).to_contain_text("SUP-002 · Agente Anterior")


def test_a_list_that_changes_faster_than_it_is_read_is_still_read_to_its_end(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """api.pages asks a page again further back when it shares nothing with the one before (items left meanwhile).
    Under churn faster than the reads — every page all new — that went on for ever, a request storm from one tab;
    it now gives up asking again after a few times and ends as plain offset paging does."""
    sup = build.usuario(2)
    offsets: list[int] = []

    def churning(route: Route) -> None:  # every answer all new ids: 200 of them until offset 360, then the end
        offset = int(re.search(r"[?&]offset=(\d+)", route.request.url)[1])  # type: ignore[index]
        offsets.append(offset)
        first = len(offsets) * 1000
        items = [{"id": first + n} for n in range(200 if offset < 360 else 10)]
        route.fulfill(status=200, content_type="application/json", body=json.dumps({"items": items, "total": 1000, "limit": 200, "offset": offset}))

    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "escritorio", landing="/efectivos") as (_, page):
        page.route("**/api/v1/churn?*", churning)
        sizes = page.evaluate(
            """async () => {
                const api = await import(new URL("api.js", document.querySelector('script[type="module"]').src));
                const sizes = [];
                for await (const items of api.pages("/api/v1/churn")) { sizes.push(items.length); if (sizes.length > 50) break; }
                return sizes;
            }"""
        )
    assert sizes[-1] == 10 and len(offsets) <= 13, (sizes, offsets)  # ended on its short page after five asks again at most


def test_a_supervisors_phone_page_finds_its_efectivo_when_another_leaves_between_pages(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """/mi looks for a supervisor's own efectivo page by page: one deleted from the first page while the second was
    on its way moved theirs back onto the first, and the page said they were linked to none."""
    sup = build.usuario(2)
    otros = [build.efectivo() for _ in range(200)]  # the list is in id order: the supervisor's is the 201st
    build.efectivo(usuario_id=sup.id, codigo_interno="SUP-001", nombre="Agente Supervisor")
    with logged_in(browser, pw, server.url, sup.email, PASSWORD, "movil", landing="/efectivos") as (_, page):
        Stream(page, drop=lambda frame: frame.get("topic") == "efectivos")  # no reload from the deletion's frame
        second = SecondPage(page, "**/api/v1/efectivos?*")
        page.goto("/mi")
        second.wait_held()
        assert _api(server, build, sup, "DELETE", f"/api/v1/efectivos/{otros[0].id}").status_code == 204
        second.release()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        expect(page.locator("#mi-efectivo")).to_contain_text("SUP-001 · Agente Supervisor")


def _pressed(page: Page, estado: str) -> Locator:
    return page.locator(f'#disponibilidad button[data-estado="{estado}"]')


def _kept(page: Page, expression: str) -> Any:
    """What the page keeps for offline (its copy of the efectivo and tareas), read in the page."""
    return page.evaluate(f"(() => {{ const kept = JSON.parse(localStorage.getItem('gad:mi:datos') ?? 'null'); return {expression}; }})()")


def test_a_second_choice_still_queued_stays_shown_once_the_first_is_applied(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """Two choices made without coverage: the first went through when coverage came back, the second did not (it
    dropped again). The page took the first's change for someone else's and showed "No disponible" though "Fuera de
    servicio" still waited to be sent — and a tap on "Disponible" from there was then refused."""
    sup = build.usuario(2)
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Nuria")
    with _phone(browser, pw, server, officer.email) as (context, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        context.set_offline(True)
        page.get_by_role("button", name="No disponible").click()
        page.get_by_role("button", name="Fuera de servicio").click()
        expect(page.locator("#cola-resumen")).to_contain_text("2 acciones")

        def second_fails(route: Route) -> None:
            if json.loads(route.request.post_data or "{}").get("estado") == "fuera_servicio":
                route.abort()
            else:
                route.continue_()

        page.route("**/api/v1/efectivos/*/disponibilidad", second_fails)
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#cola-resumen")).to_contain_text("1 acción", timeout=10_000)
        for _ in range(100):  # the reload after coming back: the copy has the first choice applied
            if _kept(page, "kept?.efectivo?.estado_disponibilidad") == "no_disponible":
                break
            page.wait_for_timeout(100)
        assert _kept(page, "kept?.efectivo?.estado_disponibilidad") == "no_disponible"
        expect(_pressed(page, "fuera_servicio")).to_have_attribute("aria-pressed", "true")
        page.unroute("**/api/v1/efectivos/*/disponibilidad")
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.", timeout=10_000)
        assert _api(server, build, sup, "GET", f"/api/v1/efectivos/{efectivo.id}").json()["estado_disponibilidad"] == "fuera_servicio"
        expect(page.locator("#conflictos li")).to_have_count(0)


def test_a_question_marked_read_in_the_tray_is_still_asked_after_a_reload(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """ "Marcar leída" on a question in the tray, at a dead spot: its "leida" waited in the outbox, and after a reload
    in which the release notices' ledger answered first the page counted the question as closed and never asked it
    again, though it still waited for acepto / no puedo (and escalated unanswered)."""
    sup = build.usuario(2)
    officer = build.usuario(1)
    build.efectivo(usuario_id=officer.id, nombre="Agente Nuria")
    with _phone(browser, pw, server, officer.email) as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        body = {"tipo": "refuerzos", "texto": "Refuerzos en la plaza de Sol", "destino": "usuarios", "usuario_ids": [officer.id]}
        assert _api(server, build, sup, "POST", "/api/v1/alertas", json=body).status_code == 201
        pregunta = page.get_by_role("alertdialog", name="Alerta de la central")
        expect(pregunta).to_contain_text("Refuerzos en la plaza de Sol")
        page.route("**/api/v1/notificaciones/*/ack", lambda route: route.abort())  # a dead spot
        page.get_by_role("button", name="Notificaciones").click()
        page.locator(".notificacion").filter(has_text="Refuerzos en la plaza de Sol").get_by_role("button", name="Marcar leída").click()
        expect(page.locator("#cola-resumen")).to_contain_text("1 acción")
        late = LateAnswers(page, re.compile(r"/api/v1/notificaciones\?pendientes=true"), lambda url: True)
        page.reload()
        late.wait_held()
        page.wait_for_timeout(500)  # the release notices' ledger answers first
        late.release()
        expect(pregunta).to_contain_text("Refuerzos en la plaza de Sol")


def test_an_older_reload_does_not_undo_the_answer_to_an_action(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """A reload the officer's own position frame started just before the tap on "Iniciar" answered after the start's
    answer (and before the reload that follows it): it put the card back to "Programada" with "Iniciar" offered, and
    kept that copy for offline."""
    sup = build.usuario(2)
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Nuria")
    tarea = build.tarea(sup, titulo="Ronda del parque")
    build.asignacion(tarea, efectivo)
    with _phone(browser, pw, server, officer.email) as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        card = page.locator(f'#actuales [data-tarea-id="{tarea.id}"]')
        expect(card).to_have_attribute("data-estado", "programada")
        older: list[tuple[Route, object]] = []
        later: list[Route] = []
        released: list[bool] = []

        def hold(route: Route) -> None:  # the first read answered by the server now, delivered later; the next ones wait
            if released:
                route.continue_()
            elif older:
                later.append(route)
            else:
                older.append((route, route.fetch()))

        page.route(re.compile(r"/api/v1/tasks\?estado=programada"), hold)
        moved = _api(server, build, sup, "PUT", f"/api/v1/efectivos/{efectivo.id}/ubicacion", json={"lat": 40.41, "lng": -3.70})
        assert moved.status_code == 200  # its frame reloads the page
        _wait_until_held(page, older, "the position's frame did not reload the page")
        card.get_by_role("button", name="Iniciar").click()
        expect(card).to_have_attribute("data-estado", "en_curso")
        expect(card).not_to_contain_text("sin enviar aún")  # the start's answer is in
        route, answer = older.pop()
        route.fulfill(response=answer)  # type: ignore[arg-type]
        page.wait_for_timeout(500)
        expect(card).to_have_attribute("data-estado", "en_curso")
        expect(card.get_by_role("button", name="Iniciar")).to_have_count(0)
        assert _kept(page, f"kept.tareas.find((t) => t.id === {tarea.id}).estado") == "en_curso"
        # Released before the handler goes: unrouting lets Playwright continue the held reads itself, and a second
        # continue on one of them raises "Route is already handled".
        released.append(True)
        for waiting in later:
            waiting.continue_()
        page.unroute(re.compile(r"/api/v1/tasks\?estado=programada"))
        expect(card).to_have_attribute("data-estado", "en_curso")


def test_a_refused_availability_shows_what_the_central_set(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The central's change did not reach the page (its socket was down); the officer's choice was refused as made
    from an availability that no longer stood, and the page said so but went on showing the old one pressed."""
    sup = build.usuario(2)
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Nuria")
    with _phone(browser, pw, server, officer.email) as (_, page):
        Stream(page, drop=lambda frame: frame.get("topic") == "efectivos")  # the page does not hear of the change
        page.reload()
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        ended = _api(server, build, sup, "POST", f"/api/v1/efectivos/{efectivo.id}/disponibilidad", json={"estado": "fuera_servicio"})
        assert ended.status_code == 200
        expect(_pressed(page, "disponible")).to_have_attribute("aria-pressed", "true")
        page.get_by_role("button", name="No disponible").click()
        expect(page.locator("#conflictos")).to_contain_text("ahora es «fuera de servicio»", timeout=10_000)
        expect(_pressed(page, "fuera_servicio")).to_have_attribute("aria-pressed", "true")


def test_an_sos_goes_ahead_of_the_positions_waiting_in_the_outbox(browser: Browser, pw: Playwright, server: LiveServer, build: Builders) -> None:
    """The outbox sent strictly in order: an SOS waited behind every position fix a shift without coverage had
    queued (up to 200), and a fix the server could not take then (503) held it back to the next round."""
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id, nombre="Agente Nuria")
    with _phone(browser, pw, server, officer.email) as (_, page):
        expect(page.locator("#conexion")).to_have_attribute("data-estado", "conectado", timeout=10_000)
        page.route("**/api/v1/efectivos/*/ubicacion", lambda route: route.fulfill(status=503, content_type="application/problem+json", body="{}"))
        page.evaluate(
            """([usuario, efectivo]) => {
                const key = `gad:mi:cola:${usuario}`;
                const queue = JSON.parse(localStorage.getItem(key) ?? "[]");
                for (let i = 0; i < 3; i++) {
                    const at = new Date(Date.now() - (3 - i) * 60000).toISOString();
                    queue.push({ key: crypto.randomUUID(), method: "PUT", path: `/api/v1/efectivos/${efectivo}/ubicacion`,
                                 body: { lat: 40.41, lng: -3.70, registrado_en: at }, label: "Posición", kind: "posicion", created: at });
                }
                localStorage.setItem(key, JSON.stringify(queue));
            }""",
            [officer.id, efectivo.id],
        )
        page.get_by_role("button", name="SOS").click()
        expect(page.locator("#sos-resultado")).to_contain_text(re.compile(r"SOS EMG-\d{8}-\d{4}"), timeout=10_000)


def test_an_answer_given_in_the_tray_before_the_panel_held_the_question_is_not_asked_again(
    browser: Browser, pw: Playwright, server: LiveServer, build: Builders
) -> None:
    """The page's read of the questions still pending was on its way (a slow link) when the officer answered the alert
    from the tray; it arrived after the answer was sent, and, with no live frame to settle it (the socket down), the
    panel asked the answered question again, and a "No puedo" there was refused."""
    sup = build.usuario(2)
    officer = build.usuario(1)
    build.efectivo(usuario_id=officer.id, nombre="Agente Nuria")
    alerta = {"tipo": "refuerzos", "texto": "Refuerzos en la plaza de Sol", "destino": "usuarios", "usuario_ids": [officer.id]}
    with _phone(browser, pw, server, officer.email) as (_, page):
        held: list[tuple[Route, Any]] = []
        released: list[bool] = []

        def hold_the_panels_read(route: Route) -> None:  # the panel's reads (every page: limit=200), not the tray's (30)
            if "limit=200" in route.request.url and not released:
                held.append((route, route.fetch()))  # answered by the server now, delivered when the test says
            else:
                route.continue_()

        page.route("**/api/v1/notificaciones?pendientes=true*", hold_the_panels_read)
        page.route_web_socket("**/ws/connect*", lambda ws: None)  # REST answers, the socket hears nothing
        assert _api(server, build, sup, "POST", "/api/v1/alertas", json=alerta).status_code == 201
        page.reload()
        _wait_until_held(page, held, "the page did not read the pending questions")
        panel = page.get_by_role("alertdialog", name="Alerta de la central")
        expect(page.locator(".notificacion").filter(has_text="Refuerzos en la plaza de Sol")).to_have_count(1, timeout=10_000)
        assert panel.is_hidden()
        page.get_by_role("button", name="Notificaciones").click()
        page.locator(".notificacion").filter(has_text="Refuerzos en la plaza de Sol").get_by_role("button", name="Acepto").click()
        expect(page.locator("#cola-resumen")).to_have_text("Todo enviado.")
        page.keyboard.press("Escape")
        released.append(True)  # the reads from here on are answered as they come
        for route, answer in held:  # read before the answer, delivered after it
            route.fulfill(response=answer)  # type: ignore[arg-type]
        for _ in range(20):
            assert panel.is_hidden(), "the answered question was asked again"
            page.wait_for_timeout(100)
        [n] = _api(server, build, officer, "GET", "/api/v1/notificaciones?causa=alerta").json()["items"]
        assert n["respuesta"] == "acepto"
