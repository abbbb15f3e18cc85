"""The notification tray and board marks in Chromium, two contexts: an operator (supervisor) and an officer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, expect

from tests.builders import Builders
from tests.conftest import LiveServer, start_gunicorn, stop_gunicorn
from tests.test_dashboard import SCREENSHOTS, _login

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fast_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # Short deadlines so an unanswered assignment escalates while the test watches.
    server = start_gunicorn(
        database_url,
        workers=1,
        tmp=tmp_path_factory.mktemp("tray"),
        extra_env={"NOTIF_PLAZOS": "asignacion=3", "NOTIF_SWEEP_INTERVAL_S": "0.3", "MAP_TILE_URL": "http://127.0.0.1:9/{z}/{x}/{y}.png"},
    )
    yield server
    stop_gunicorn(server)


def _assign(server: LiveServer, build: Builders, sup: object, tarea_id: int, efectivo_id: int) -> None:
    response = requests.post(f"{server.url}/api/v1/tasks/{tarea_id}/efectivos", json={"efectivo_ids": [efectivo_id]}, headers=build.headers(sup), timeout=30)
    assert response.status_code == 200, response.text


def test_officer_answers_from_the_tray_and_the_operator_board_shows_answers_and_escalations(
    browser: Browser,
    fast_server: LiveServer,
    build: Builders,
) -> None:
    sup = build.usuario(2, nombre="Olga", apellido="Operadora")
    officer = build.usuario(1, nombre="Pedro", apellido="Patrulla")
    efectivo = build.efectivo(usuario_id=officer.id)
    first = build.tarea(sup, codigo="NOTI-UI-1", titulo="Patrulla del puerto")
    second = build.tarea(sup, codigo="NOTI-UI-2", titulo="Vigilancia del mercado")
    ctx_op, operator = _login(browser, fast_server, sup.email)
    ctx_of, phone = _login(browser, fast_server, officer.email)
    try:
        phone.goto("/efectivos")  # a page without the live board: the tray opens its own socket
        expect(phone.locator("#bandeja-contador")).to_have_text("0")
        phone.wait_for_timeout(2000)

        _assign(fast_server, build, sup, first.id, efectivo.id)
        expect(phone.locator("#bandeja-contador")).to_have_text("1", timeout=5000)
        phone.get_by_role("button", name="Notificaciones").click()
        item = phone.locator(".notificacion").filter(has_text="Nueva asignación: NOTI-UI-1")
        expect(item).to_be_visible()
        # The page reported delivery as soon as the frame arrived.
        expect(item).to_have_attribute("data-estado", "entregada", timeout=5000)
        phone.screenshot(path=str(SCREENSHOTS / "bandeja-agente.png"))
        item.get_by_role("button", name="Acepto").click()
        expect(phone.locator(".notificacion").filter(has_text="NOTI-UI-1")).to_have_attribute("data-estado", "aceptada")
        expect(phone.locator("#bandeja-contador")).to_have_text("0")
        expect(operator.locator(f'[data-tarea-id="{first.id}"] .marca-aceptada')).to_have_text("✓ Acepta: Pedro Patrulla", timeout=5000)

        # Unanswered: after the 3 s deadline the operator's board marks it and the operator is notified.
        _assign(fast_server, build, sup, second.id, build.efectivo(usuario_id=build.usuario(1, nombre="Lucía", apellido="Lenta").id).id)
        expect(operator.locator(f'[data-tarea-id="{second.id}"] .marca-escalada')).to_have_text("⚠ Sin respuesta: Lucía Lenta", timeout=15000)
        expect(operator.locator("#bandeja-contador")).not_to_have_text("0")
        operator.get_by_role("button", name="Notificaciones").click()
        expect(operator.locator('.notificacion[data-causa="escalacion"]').first).to_contain_text("Sin respuesta: Nueva asignación: NOTI-UI-2")

        # A broadcast alert from the operator's tray; the officer confirms; the tally updates live.
        alert_form = operator.locator("#alerta-form")  # the board has its own "Tipo" (the emergency dialog)
        alert_form.get_by_label("Tipo").select_option("refuerzos")
        alert_form.get_by_label("Texto").fill("Refuerzos en la plaza")
        operator.get_by_role("button", name="Enviar alerta").click()
        alerta = operator.locator(".alerta").filter(has_text="Refuerzos en la plaza")
        expect(alerta.locator(".recuento")).to_contain_text("0 / ")
        alert_item = phone.locator(".notificacion").filter(has_text="Refuerzos en la plaza")
        expect(alert_item).to_be_visible(timeout=5000)
        alert_item.get_by_label("Motivo").fill("Sin vehículo")
        alert_item.get_by_role("button", name="No puedo").click()
        expect(phone.locator(".notificacion").filter(has_text="Refuerzos en la plaza")).to_have_attribute("data-estado", "rechazada")
        expect(alerta.locator(".recuento")).to_contain_text("1 no pueden", timeout=5000)
        operator.screenshot(path=str(SCREENSHOTS / "tablero-marcas-y-alertas.png"), full_page=True)
        alerta.get_by_role("button", name="Cerrar").click()
        expect(alerta).to_have_count(0)

        # An alert closed before the officer answered: its question is withdrawn. A tray that still offers it gets
        # the 409 and drops the buttons; a tray loaded afterwards never offers them.
        alert_form.get_by_label("Texto").fill("Aviso que se cierra")
        operator.get_by_role("button", name="Enviar alerta").click()
        withdrawn = phone.locator(".notificacion").filter(has_text="Aviso que se cierra")
        expect(withdrawn.get_by_role("button", name="Acepto")).to_be_visible(timeout=5000)
        operator.locator(".alerta").filter(has_text="Aviso que se cierra").get_by_role("button", name="Cerrar").click()
        expect(operator.locator(".alerta").filter(has_text="Aviso que se cierra")).to_have_count(0)
        withdrawn.get_by_role("button", name="Acepto").click()
        expect(withdrawn.get_by_role("button", name="Acepto")).to_have_count(0)
        expect(withdrawn.locator(".error")).not_to_be_empty()
        # The reason outlives the redraws the closing's own frames cause (it vanished with the next reload).
        phone.evaluate("window.dispatchEvent(new CustomEvent('gad:resync'))")
        phone.wait_for_timeout(1000)
        expect(withdrawn.locator(".error")).not_to_be_empty()
        phone.reload()
        phone.get_by_role("button", name="Notificaciones").click()
        reloaded = phone.locator(".notificacion").filter(has_text="Aviso que se cierra")
        expect(reloaded).to_be_visible()
        expect(reloaded.get_by_role("button", name="Acepto")).to_have_count(0)
        expect(phone.locator(".notificacion").filter(has_text="Refuerzos en la plaza").get_by_role("button", name="No puedo")).to_have_count(0)
    finally:
        ctx_op.close()
        ctx_of.close()
