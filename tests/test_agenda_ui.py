"""Planning week and printable report in a real headless Chromium against real gunicorn (Spanish UI)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, expect

from gad.models import Asignacion, utcnow
from tests.builders import Builders
from tests.conftest import LiveServer
from tests.test_dashboard import SCREENSHOTS, _login, board_server  # noqa: F401 - fixtures reused as they are

pytestmark = pytest.mark.slow
MADRID = ZoneInfo("Europe/Madrid")


def _this_week(weekday: int, hour: int) -> datetime:
    """A wall-clock hour in Madrid on a weekday (0 = lunes) of the current week: the page's default week."""
    today = datetime.now(MADRID).date()
    day = today - timedelta(days=today.weekday()) + timedelta(days=weekday)
    return datetime.combine(day, time(hour), MADRID)


def _local_input(value: datetime) -> str:
    return value.astimezone(MADRID).strftime("%Y-%m-%dT%H:%M")


def test_planning_week_shows_agenda_creates_checks_and_moves_turnos(browser: Browser, board_server: LiveServer, build: Builders) -> None:  # noqa: F811
    sup = build.usuario(2)
    ana = build.efectivo(unidad="Móvil 5", nombre="Ana Planificada")
    luis = build.efectivo(unidad="Móvil 5", nombre="Luis Ausente")
    build.efectivo(unidad="Móvil 6", nombre="Otra Unidad")
    miercoles = _this_week(2, 8)
    shift = build.turno(ana, miercoles, horas=6)
    build.licencia(luis, _this_week(3, 0), dias=1, tipo="formacion")
    tarea = build.tarea(sup, codigo="PLAN-UI-1", inicio_programado=_this_week(4, 10), fin_programado=_this_week(4, 12))
    build._save(Asignacion(tarea_id=tarea.id, efectivo_id=ana.id, periodo=_range(_this_week(4, 10), _this_week(4, 12))))
    ctx, page = _login(browser, board_server, sup.email)
    try:
        page.goto("/planificacion")
        expect(page.locator("body")).to_have_attribute("data-listo", "true")
        page.locator("#unidad").select_option("Móvil 5")
        rows = page.locator("#filas tr")
        expect(rows).to_have_count(2)
        ana_row = page.locator(f'tr[data-efectivo-id="{ana.id}"]')
        expect(ana_row.locator(f'td[data-dia="{miercoles.date().isoformat()}"] [data-turno-id="{shift.id}"]')).to_have_text("Servicio 08:00–14:00")
        expect(ana_row.locator(".bloque.reserva.fuera")).to_contain_text("PLAN-UI-1")
        expect(ana_row.locator(".bloque.reserva.fuera")).to_contain_text("fuera de turno")
        expect(page.locator(f'tr[data-efectivo-id="{luis.id}"] .bloque.licencia')).to_contain_text("Formación")
        expect(page.locator("#cabecera th").nth(1)).to_contain_text("Lunes")

        # Its end before its start: said in Spanish (the form showed the field's English, "must be after inicio").
        page.locator("#turno-efectivo").select_option(str(luis.id))
        page.get_by_label("Inicio").fill(_local_input(_this_week(1, 15)))
        page.get_by_label("Fin", exact=True).fill(_local_input(_this_week(1, 7)))
        page.get_by_role("button", name="Comprobar conflictos").click()
        expect(page.locator("#conflictos")).to_have_text("El fin debe ser posterior al inicio.")

        # A new shift for Luis on Tuesday: no conflicts, saved, drawn.
        page.locator("#turno-efectivo").select_option(str(luis.id))
        page.get_by_label("Inicio").fill(_local_input(_this_week(1, 7)))
        page.get_by_label("Fin", exact=True).fill(_local_input(_this_week(1, 15)))
        page.get_by_role("button", name="Comprobar conflictos").click()
        expect(page.locator("#conflictos")).to_have_text("Sin conflictos.")
        page.get_by_role("button", name="Guardar turno").click()
        expect(page.locator("#conflictos")).to_have_text("Turno guardado.")
        expect(page.locator(f'tr[data-efectivo-id="{luis.id}"] .bloque.turno')).to_have_text("Servicio 07:00–15:00")

        # Over his leave on Thursday: the conflict is shown before saving, and saving is refused.
        page.locator("#turno-efectivo").select_option(str(luis.id))
        page.get_by_label("Inicio").fill(_local_input(_this_week(3, 9)))
        page.get_by_label("Fin", exact=True).fill(_local_input(_this_week(3, 17)))
        page.get_by_role("button", name="Comprobar conflictos").click()
        expect(page.locator("#conflictos")).to_contain_text("1 conflicto(s)")
        expect(page.locator("#conflictos")).to_contain_text("Se solapa con la licencia")
        page.get_by_role("button", name="Guardar turno").click()
        expect(page.locator("#conflictos")).to_contain_text("Se solapa con la licencia")
        expect(page.locator(f'tr[data-efectivo-id="{luis.id}"] .bloque.turno')).to_have_count(1)

        # Move Ana's Wednesday shift to Friday afternoon: it now covers the booking, which is no longer flagged.
        ana_row.locator(f'[data-turno-id="{shift.id}"]').click()
        expect(page.get_by_role("button", name="Mover turno")).to_be_visible()
        page.get_by_label("Inicio").fill(_local_input(_this_week(4, 9)))
        page.get_by_label("Fin", exact=True).fill(_local_input(_this_week(4, 17)))
        page.get_by_role("button", name="Mover turno").click()
        expect(page.locator("#conflictos")).to_have_text("Turno guardado.")
        friday = _this_week(4, 9).date().isoformat()
        expect(ana_row.locator(f'td[data-dia="{friday}"] [data-turno-id="{shift.id}"]')).to_have_text("Servicio 09:00–17:00")
        expect(ana_row.locator(".bloque.reserva.fuera")).to_have_count(0)
        expect(ana_row.locator(".bloque.reserva")).to_contain_text("PLAN-UI-1")

        # Live: a shift created elsewhere (over the API) appears without reloading.
        headers = build.headers(sup)
        start = _this_week(0, 6)
        body = {"efectivo_id": ana.id, "inicio": start.isoformat(), "fin": (start + timedelta(hours=4)).isoformat()}
        assert board_server.post("/api/v1/turnos", json=body, headers=headers).status_code == 201
        expect(ana_row.locator(f'td[data-dia="{start.date().isoformat()}"] .bloque.turno')).to_have_text("Servicio 06:00–10:00", timeout=5_000)
        page.screenshot(path=str(SCREENSHOTS / "planificacion-semana.png"), full_page=True)
    finally:
        ctx.close()


def _range(a: datetime, b: datetime) -> object:
    from sqlalchemy.dialects.postgresql import Range

    return Range(a, b, bounds="[)")


def test_report_page_draws_charts_and_prints(browser: Browser, board_server: LiveServer, build: Builders) -> None:  # noqa: F811
    sup = build.usuario(2)
    efectivo = build.efectivo(unidad="Móvil 8")
    now = utcnow().replace(microsecond=0)
    for i, (tipo, estado) in enumerate([("patrullaje", "finalizada"), ("patrullaje", "cancelada"), ("vigilancia", "finalizada"), ("vigilancia", "programada")]):
        created = now - timedelta(days=3 - i, hours=2)
        started = created + timedelta(minutes=5 + i) if estado != "programada" else None
        tarea = build.tarea(
            sup,
            codigo=f"INF-{i}",
            tipo=tipo,
            estado=estado,
            created_at=created,
            inicio_real=started,
            fin_real=started + timedelta(minutes=30) if started else None,
        )
        build._save(
            Asignacion(tarea_id=tarea.id, efectivo_id=efectivo.id, asignado_en=created + timedelta(minutes=2), liberado_en=created + timedelta(minutes=40))
        )
    build.turno(efectivo, now - timedelta(days=2), horas=8)
    desde = (datetime.now(MADRID).date() - timedelta(days=7)).isoformat()
    hasta = date.today().isoformat()
    ctx, page = _login(browser, board_server, sup.email)
    try:
        page.goto(f"/informes?desde={desde}&hasta={hasta}")
        expect(page.get_by_role("heading", name="Informe operativo")).to_be_visible()
        expect(page.locator("#tabla-tiempos tbody tr")).to_have_count(3)  # patrullaje, vigilancia, Total
        expect(page.locator("#tabla-tiempos tr.total td").first).to_have_text("4")
        expect(page.locator("#tabla-resultados tr.total")).to_contain_text("Total")
        expect(page.locator("#g-tiempos svg rect")).to_have_count(4)  # p50 and p90 for two tipos
        expect(page.locator("#g-resultados svg rect")).not_to_have_count(0)
        expect(page.locator("#g-tendencia svg polyline").first).to_be_visible()
        expect(page.locator("#tabla-carga")).to_contain_text("8,0")  # hours of turno, decimal comma
        page.get_by_role("form", name="Periodo y filtros").locator('select[name="tipo"]').select_option("vigilancia")
        page.get_by_role("button", name="Actualizar").click()
        expect(page.locator("#tabla-tiempos tbody tr")).to_have_count(2)
        page.screenshot(path=str(SCREENSHOTS / "informe.png"), full_page=True)

        page.emulate_media(media="print")
        expect(page.locator("header.topbar")).to_be_hidden()
        expect(page.locator("form.filtros")).to_be_hidden()
        expect(page.locator("#g-tiempos svg")).to_be_visible()
        expect(page.locator("#tabla-resultados")).to_be_visible()
        pdf = page.pdf(format="A4", print_background=True)
        assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
        (SCREENSHOTS / "informe.pdf").write_bytes(pdf)
    finally:
        ctx.close()
    field_ctx, field_page = _login(browser, board_server, build.usuario(1).email)
    try:
        assert field_page.goto("/informes").status == 403  # type: ignore[union-attr]
        assert field_page.goto("/planificacion").status == 403  # type: ignore[union-attr]
    finally:
        field_ctx.close()
