"""Efectivos API: create, list, positions, availability set by hand, deactivation."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.builders import Builders
from tests.helpers import all_events


def test_supervisor_creates_efectivo_and_reads_it_back(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    body = {"codigo_interno": "EF-900", "nombre": "  Laura   Gómez ", "rango": "Cabo", "unidad": "Móvil 101", "especialidad": "tráfico"}
    created = client.post("/api/v1/efectivos", json=body, headers=build.headers(sup))
    assert created.status_code == 201 and created.headers["ETag"] == '"1"'
    data = created.get_json()
    assert data["nombre"] == "Laura Gómez" and data["estado_disponibilidad"] == "disponible"
    assert client.get(created.headers["Location"], headers=build.headers(sup)).get_json()["codigo_interno"] == "EF-900"
    duplicate = client.post("/api/v1/efectivos", json=body, headers=build.headers(sup))
    assert duplicate.status_code == 409 and duplicate.get_json()["field"] == "codigo_interno"
    assert duplicate.get_json()["mensaje"] == "Ya hay un efectivo con el código EF-900."  # what the Efectivos page shows


def test_efectivo_list_filters_and_paginates(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    build.efectivo(unidad="Móvil 7", especialidad="canina")
    build.efectivo(unidad="Móvil 7", estado_disponibilidad="fuera_servicio")
    build.efectivo(unidad="Móvil 8", nombre="Buscable Único")
    headers = build.headers(sup)
    assert client.get("/api/v1/efectivos?unidad=Móvil 7", headers=headers).get_json()["total"] == 2
    assert client.get("/api/v1/efectivos?estado_disponibilidad=fuera_servicio", headers=headers).get_json()["total"] == 1
    assert client.get("/api/v1/efectivos?especialidad=canina", headers=headers).get_json()["total"] == 1
    assert client.get("/api/v1/efectivos?q=buscable", headers=headers).get_json()["total"] == 1
    page = client.get("/api/v1/efectivos?limit=2&offset=2", headers=headers).get_json()
    assert page["total"] == 3 and len(page["items"]) == 1
    bad = client.get("/api/v1/efectivos?estado_disponibilidad=volando", headers=headers)
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"].startswith("query.estado_disponibilidad")


def test_a_unidad_is_one_unidad_however_its_accent_and_spaces_were_typed(client: FlaskClient, build: Builders) -> None:
    """«Móvil 101» typed with a combining accent, doubled spaces or an invisible character is stored, filtered and
    alerted as the one unidad it reads as: an alert to it used to miss the efectivos written the other way."""
    sup = build.usuario(2)
    headers = build.headers(sup)
    spellings = ["Mo\u0301vil  101", "\u200bMóvil\t101\u00a0", "Móvil 101"]
    members = [build.usuario(1) for _ in spellings]
    for index, (spelling, member) in enumerate(zip(spellings, members, strict=True)):
        body = {"codigo_interno": f"EF-U{index}", "nombre": "Agente Uno", "unidad": spelling, "usuario_id": member.id}
        created = client.post("/api/v1/efectivos", json=body, headers=headers)
        assert created.status_code == 201 and created.get_json()["unidad"] == "Móvil 101", created.get_json()
    build.efectivo(unidad="móvil 101")  # capitals are the command centre's own: another unidad
    assert client.get("/api/v1/efectivos?unidad=Mo\u0301vil%20%20101", headers=headers).get_json()["total"] == 3
    alert = {"tipo": "aviso", "texto": "Relevo", "destino": "unidad", "unidad": " Mo\u0301vil 101 "}
    sent = client.post("/api/v1/alertas", json=alert, headers=headers)
    assert sent.status_code == 201 and sent.get_json()["total"] == 3
    blank = client.patch(created.headers["Location"], json={"unidad": " \u200b "}, headers=headers | {"If-Match": created.headers["ETag"]})
    assert blank.status_code == 200 and blank.get_json()["unidad"] is None


def test_efectivo_user_sees_and_reports_only_their_own_efectivo(client: FlaskClient, build: Builders) -> None:
    user = build.usuario(1)
    mine, other = build.efectivo(usuario_id=user.id), build.efectivo()
    headers = build.headers(user)
    assert [e["id"] for e in client.get("/api/v1/efectivos", headers=headers).get_json()["items"]] == [mine.id]
    moved = client.put(f"/api/v1/efectivos/{mine.id}/ubicacion", json={"lat": 40.41, "lng": -3.70}, headers=headers)
    assert moved.status_code == 200
    data = moved.get_json()
    assert (data["lat"], data["lng"]) == (40.41, -3.70) and data["posicion_en"] is not None
    assert client.put(f"/api/v1/efectivos/{other.id}/ubicacion", json={"lat": 1, "lng": 1}, headers=headers).status_code == 403
    off = client.post(f"/api/v1/efectivos/{mine.id}/disponibilidad", json={"estado": "fuera_servicio"}, headers=headers)
    assert off.status_code == 200 and off.get_json()["estado_disponibilidad"] == "fuera_servicio"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"lat": 91, "lng": 0}, "body.lat"), ({"lat": 0, "lng": -181}, "body.lng"), ({"lat": "norte", "lng": 0}, "body.lat"), ({"lat": 1}, "body.lng")],
)
def test_bad_positions_are_422_with_field_paths(client: FlaskClient, build: Builders, body: dict, field: str) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    response = client.put(f"/api/v1/efectivos/{efectivo.id}/ubicacion", json=body, headers=build.headers(sup))
    assert response.status_code == 422
    assert field in {e["field"] for e in response.get_json()["errors"]}


def test_en_tarea_cannot_be_set_by_hand(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    response = client.post(f"/api/v1/efectivos/{efectivo.id}/disponibilidad", json={"estado": "en_tarea"}, headers=build.headers(sup))
    assert response.status_code == 409


def test_deactivating_an_assigned_efectivo_is_refused(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    tarea = build.tarea(sup)
    build.asignacion(tarea, efectivo)
    assert client.delete(f"/api/v1/efectivos/{efectivo.id}", headers=build.headers(sup)).status_code == 409
    free = build.efectivo()
    assert client.delete(f"/api/v1/efectivos/{free.id}", headers=build.headers(sup)).status_code == 204
    assert client.get(f"/api/v1/efectivos/{free.id}", headers=build.headers(sup)).get_json()["activo"] is False


def test_deactivating_a_deactivated_efectivo_again_changes_and_announces_nothing(app: Flask, client: FlaskClient, build: Builders) -> None:
    """A client retrying its DELETE gets 204 again; the efectivo keeps its version (other clients' If-Match stays
    good) and the board hears of the deactivation once."""
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    assert client.delete(f"/api/v1/efectivos/{efectivo.id}", headers=headers).status_code == 204
    deactivated = client.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers)
    events = len(all_events(app))
    again = client.delete(f"/api/v1/efectivos/{efectivo.id}", headers=headers)
    assert again.status_code == 204
    assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers).headers["ETag"] == deactivated.headers["ETag"]
    assert len(all_events(app)) == events
    stale = client.delete(f"/api/v1/efectivos/{efectivo.id}", headers=headers | {"If-Match": '"1"'})
    assert stale.status_code == 412  # a stale precondition is still refused, whatever the row's state


def test_an_efectivo_is_linked_only_to_an_active_usuario_but_keeps_a_link_made_before(client: FlaskClient, build: Builders) -> None:
    """A deactivated usuario cannot log in: linking an efectivo to one would leave its assignments unanswered."""
    sup = build.usuario(2)
    headers = build.headers(sup)
    gone = build.usuario(1, activo=False)
    created = client.post("/api/v1/efectivos", json={"codigo_interno": "EF-950", "nombre": "Ana Ruiz", "usuario_id": gone.id}, headers=headers)
    assert created.status_code == 422 and created.mimetype == "application/problem+json"
    assert created.get_json()["errors"][0]["field"] == "body.usuario_id"
    efectivo = build.efectivo()
    patched = client.patch(f"/api/v1/efectivos/{efectivo.id}", json={"usuario_id": gone.id}, headers=headers)
    assert patched.status_code == 422 and patched.get_json()["errors"][0]["field"] == "body.usuario_id"
    assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers).get_json()["usuario_id"] is None

    linked_user = build.usuario(1)
    linked = build.efectivo(usuario_id=linked_user.id)
    assert client.delete(f"/api/v1/users/{linked_user.id}", headers=build.headers(build.usuario(3))).status_code == 204
    # Resending the efectivo with the link it already has is no new link.
    again = client.patch(f"/api/v1/efectivos/{linked.id}", json={"usuario_id": linked_user.id, "rango": "Cabo"}, headers=headers)
    assert again.status_code == 200 and again.get_json()["rango"] == "Cabo"


def test_an_availability_taken_from_a_state_changed_meanwhile_is_refused_not_applied(client: FlaskClient, build: Builders) -> None:
    """``desde`` is the availability the officer saw when they chose (a phone's outbox sends it later, when the
    coverage is back): if someone else changed it meanwhile, the old choice must not undo that change."""
    sup, officer = build.usuario(2), build.usuario(1)
    mine = build.efectivo(usuario_id=officer.id)
    path = f"/api/v1/efectivos/{mine.id}/disponibilidad"
    # Taken offline from "disponible"; meanwhile the supervisor ended the shift.
    assert client.post(path, json={"estado": "fuera_servicio"}, headers=build.headers(sup)).status_code == 200
    stale = client.post(path, json={"estado": "no_disponible", "desde": "disponible"}, headers=build.headers(officer))
    assert stale.status_code == 409 and stale.headers["Content-Type"] == "application/problem+json"
    problem = stale.get_json()
    assert problem["estado_actual"] == "fuera_servicio"
    assert problem["mensaje"] == "Su disponibilidad cambió mientras tanto: ahora es «fuera de servicio». No se aplicó «no disponible»."
    current = client.get(f"/api/v1/efectivos/{mine.id}", headers=build.headers(sup)).get_json()
    assert (current["estado_disponibilidad"], current["version"]) == ("fuera_servicio", 2)
    # What it would have become anyway is no conflict; from the state it still is, the change applies.
    assert client.post(path, json={"estado": "fuera_servicio", "desde": "disponible"}, headers=build.headers(officer)).status_code == 200
    applied = client.post(path, json={"estado": "disponible", "desde": "fuera_servicio"}, headers=build.headers(officer))
    assert applied.status_code == 200 and applied.get_json()["estado_disponibilidad"] == "disponible"
    # en_tarea is never chosen by hand, whatever it was chosen from: that rule's own reason.
    by_hand = client.post(path, json={"estado": "en_tarea", "desde": "no_disponible"}, headers=build.headers(officer))
    assert by_hand.status_code == 409 and "allowed" in by_hand.get_json()
    bad = client.post(path, json={"estado": "disponible", "desde": "volando"}, headers=build.headers(officer))
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "body.desde"
