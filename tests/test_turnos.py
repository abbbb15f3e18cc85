"""Turnos and licencias: patterns, the database's no-overlap guarantee, 409s naming the clash, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import IntegrityError

from gad.extensions import db
from gad.models import Evento, Licencia, Turno
from tests.builders import Builders

T0 = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)  # a Monday, 08:00 in Madrid


def _iso(value: datetime) -> str:
    return value.isoformat()


def _turno(client: FlaskClient, headers: dict[str, str], efectivo_id: int, inicio: datetime, horas: int = 8, **extra: Any) -> Any:
    body = {"efectivo_id": efectivo_id, "inicio": _iso(inicio), "fin": _iso(inicio + timedelta(hours=horas))} | extra
    return client.post("/api/v1/turnos", json=body, headers=headers)


def test_single_turno_is_created_with_the_efectivos_unidad_and_an_event(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo(unidad="Móvil 7")
    response = _turno(client, build.headers(sup), efectivo.id, T0, tipo="guardia")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["total"] == 1 and body["serie"] is None
    item = body["items"][0]
    assert item["unidad"] == "Móvil 7" and item["tipo"] == "guardia"
    assert datetime.fromisoformat(item["inicio"]) == T0 and datetime.fromisoformat(item["fin"]) == T0 + timedelta(hours=8)
    with app.app_context():
        event = db.session.query(Evento).filter_by(event_type="turnos_created").one()
        assert event.topic == "turnos" and event.payload["efectivo_id"] == efectivo.id and len(event.payload["turnos"]) == 1


def test_overlapping_turno_is_409_naming_the_existing_one_and_back_to_back_is_fine(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    first = _turno(client, headers, efectivo.id, T0).get_json()["items"][0]
    clash = _turno(client, headers, efectivo.id, T0 + timedelta(hours=4))
    assert clash.status_code == 409 and clash.mimetype == "application/problem+json"
    problem = clash.get_json()
    assert problem["conflicto"]["clase"] == "turno" and problem["conflicto"]["id"] == first["id"]
    assert f"turno {first['id']}" in problem["detail"]
    assert _turno(client, headers, efectivo.id, T0 + timedelta(hours=8)).status_code == 201  # [08:00, 16:00) then [16:00, ...)
    other = build.efectivo()
    assert _turno(client, headers, other.id, T0).status_code == 201  # another efectivo, same hours


def test_database_refuses_overlapping_turnos_written_behind_the_service(app: Flask, build: Builders) -> None:
    efectivo = build.efectivo()
    with app.app_context():
        db.session.execute(
            db.text("INSERT INTO turnos (efectivo_id, tipo, periodo, created_at, updated_at) VALUES (:e, 'servicio', tstzrange(:a, :b), now(), now())"),
            {"e": efectivo.id, "a": T0, "b": T0 + timedelta(hours=8)},
        )
        db.session.commit()
        with pytest.raises(IntegrityError) as refused:
            db.session.execute(
                db.text("INSERT INTO turnos (efectivo_id, tipo, periodo, created_at, updated_at) VALUES (:e, 'servicio', tstzrange(:a, :b), now(), now())"),
                {"e": efectivo.id, "a": T0 + timedelta(hours=1), "b": T0 + timedelta(hours=2)},
            )
        db.session.rollback()
        assert refused.value.orig.pgcode == "23P01"  # type: ignore[union-attr]


def test_12x36_pattern_creates_every_occurrence_atomically(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    response = _turno(client, build.headers(sup), efectivo.id, T0, horas=12, repetir={"cada_horas": 48, "hasta": _iso(T0 + timedelta(days=14))})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["total"] == 7 and body["serie"]
    starts = [datetime.fromisoformat(i["inicio"]) for i in body["items"]]
    assert starts == [T0 + timedelta(hours=48 * k) for k in range(7)]


def test_weekly_rota_keeps_wall_clock_hours_across_the_daylight_saving_change(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    start = datetime(2027, 3, 22, 7, 0, tzinfo=UTC)  # Monday 08:00 CET; Spain moves to CEST on 28 March 2027
    response = _turno(client, build.headers(sup), efectivo.id, start, repetir={"dias_semana": [0, 2, 4], "hasta": _iso(start + timedelta(days=13))})
    assert response.status_code == 201, response.get_json()
    starts = [datetime.fromisoformat(i["inicio"]).astimezone(UTC) for i in response.get_json()["items"]]
    assert len(starts) == 6
    assert starts[0].hour == 7 and starts[-1].hour == 6  # 08:00 local before and after the change
    assert [s.weekday() for s in starts] == [0, 2, 4, 0, 2, 4]


def test_weekly_72_hour_shift_that_would_last_73_hours_across_the_autumn_change_is_refused_whole(app: Flask, client: FlaskClient, build: Builders) -> None:
    """Kept on the wall clock (Friday 08:00 to Monday 08:00), the weekend the clocks go back lasts 73 h: it used to
    be stored so, past the 72 h any turno created or edited alone is held to."""
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    friday = datetime(2027, 10, 8, 6, 0, tzinfo=UTC)  # 08:00 CEST; Spain returns to CET on Sunday 31 October 2027
    for path in ("/api/v1/turnos/comprobar", "/api/v1/turnos"):
        body = {"efectivo_id": efectivo.id, "inicio": _iso(friday), "fin": _iso(friday + timedelta(hours=72))}
        refused = client.post(path, json=body | {"repetir": {"dias_semana": [4], "hasta": _iso(friday + timedelta(weeks=5))}}, headers=headers)
        assert refused.status_code == 422, refused.get_json()
        [error] = refused.get_json()["errors"]
        assert error["field"] == "body.repetir.dias_semana"
        assert "2027-10-29 lasts 73 hours" in error["message"] and "at most 72 hours" in error["message"]
    with app.app_context():
        assert db.session.query(Turno).count() == 0
    # Ending before the change, the same rota is created; the spring change makes its weekend 71 h, within the cap.
    created = _turno(client, headers, efectivo.id, friday, horas=72, repetir={"dias_semana": [4], "hasta": _iso(friday + timedelta(weeks=2))})
    assert created.status_code == 201 and created.get_json()["total"] == 2
    spring = datetime(2027, 3, 26, 7, 0, tzinfo=UTC)  # Friday 08:00 CET; CEST from Sunday 28 March 2027
    items = _turno(client, headers, efectivo.id, spring - timedelta(weeks=1), horas=72, repetir={"dias_semana": [4], "hasta": _iso(spring + timedelta(days=1))})
    assert items.status_code == 201, items.get_json()
    spans = [datetime.fromisoformat(i["fin"]) - datetime.fromisoformat(i["inicio"]) for i in items.get_json()["items"]]
    assert spans == [timedelta(hours=72), timedelta(hours=71)]


def test_pattern_colliding_in_its_30th_week_is_refused_whole(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    week30 = T0 + timedelta(weeks=29, hours=2)
    existing = _turno(client, headers, efectivo.id, week30, horas=2).get_json()["items"][0]
    response = _turno(client, headers, efectivo.id, T0, repetir={"dias_semana": [0, 1, 2, 3, 4], "hasta": _iso(T0 + timedelta(weeks=40))})
    assert response.status_code == 409
    problem = response.get_json()
    assert problem["conflicto"]["id"] == existing["id"] and problem["conflicto"]["ocurrencia"] == 29 * 5
    with app.app_context():
        assert db.session.query(Turno).count() == 1


def test_invalid_turnos_are_422_with_field_paths(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    backwards = client.post("/api/v1/turnos", json={"efectivo_id": efectivo.id, "inicio": _iso(T0), "fin": _iso(T0 - timedelta(hours=1))}, headers=headers)
    assert backwards.status_code == 422 and backwards.get_json()["errors"][0]["field"] == "body.fin"
    too_long = _turno(client, headers, efectivo.id, T0, horas=100)
    assert too_long.status_code == 422
    naive = client.post("/api/v1/turnos", json={"efectivo_id": efectivo.id, "inicio": "2027-03-01T08:00:00", "fin": "2027-03-01T16:00:00"}, headers=headers)
    assert naive.status_code == 422
    overlapping_cycle = _turno(client, headers, efectivo.id, T0, horas=12, repetir={"cada_horas": 6, "hasta": _iso(T0 + timedelta(days=2))})
    assert overlapping_cycle.status_code == 422 and overlapping_cycle.get_json()["errors"][0]["field"] == "body.repetir.cada_horas"
    assert overlapping_cycle.get_json()["errors"][0]["mensaje"] == "La repetición es más corta que el turno: los turnos se solaparían."
    both = _turno(client, headers, efectivo.id, T0, repetir={"cada_horas": 24, "dias_semana": [1], "hasta": _iso(T0 + timedelta(days=2))})
    assert both.status_code == 422
    huge = _turno(client, headers, efectivo.id, T0, horas=1, repetir={"cada_horas": 1, "hasta": _iso(T0 + timedelta(days=300))})
    assert huge.status_code == 422
    unknown = _turno(client, headers, 99999, T0)
    assert unknown.status_code == 422 and unknown.get_json()["errors"][0]["field"] == "body.efectivo_id"


def test_licencia_refuses_overlaps_both_ways(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    leave = {"efectivo_id": efectivo.id, "tipo": "vacaciones", "inicio": _iso(T0 + timedelta(days=7)), "fin": _iso(T0 + timedelta(days=14))}
    created = client.post("/api/v1/licencias", json=leave, headers=headers)
    assert created.status_code == 201, created.get_json()
    licencia_id = created.get_json()["id"]
    # A shift inside the leave: 409 naming the licencia.
    inside = _turno(client, headers, efectivo.id, T0 + timedelta(days=8))
    assert inside.status_code == 409 and inside.get_json()["conflicto"] == inside.get_json()["conflicto"] | {"clase": "licencia", "id": licencia_id}
    # A second, overlapping leave.
    again = client.post("/api/v1/licencias", json=leave | {"tipo": "enfermedad"}, headers=headers)
    assert again.status_code == 409 and again.get_json()["conflicto"]["clase"] == "licencia"
    # A leave over an existing shift: 409 naming the shift.
    shift = _turno(client, headers, efectivo.id, T0).get_json()["items"][0]
    over = client.post("/api/v1/licencias", json=leave | {"inicio": _iso(T0), "fin": _iso(T0 + timedelta(days=1))}, headers=headers)
    assert over.status_code == 409 and over.get_json()["conflicto"] == over.get_json()["conflicto"] | {"clase": "turno", "id": shift["id"]}
    # One that ends where it starts is refused as a licencia (it was called "the turno").
    empty = client.post("/api/v1/licencias", json=leave | {"fin": leave["inicio"]}, headers=headers)
    assert empty.status_code == 422 and empty.get_json()["detail"] == "The licencia is invalid."
    assert empty.get_json()["errors"][0]["field"] == "body.fin"
    # Deleting the leave frees the week.
    assert client.delete(f"/api/v1/licencias/{licencia_id}", headers=headers).status_code == 204
    assert _turno(client, headers, efectivo.id, T0 + timedelta(days=8)).status_code == 201


def test_database_trigger_keeps_turnos_out_of_licencias(app: Flask, build: Builders) -> None:
    efectivo = build.efectivo()
    with app.app_context():
        db.session.add(Licencia(efectivo_id=efectivo.id, tipo="formacion", periodo=_range(T0, T0 + timedelta(days=2))))
        db.session.commit()
        db.session.add(Turno(efectivo_id=efectivo.id, tipo="servicio", periodo=_range(T0 + timedelta(hours=1), T0 + timedelta(hours=9))))
        with pytest.raises(IntegrityError) as refused:
            db.session.commit()
        db.session.rollback()
        assert refused.value.orig.diag.constraint_name == "turnos_en_licencia"  # type: ignore[union-attr]


def _range(a: datetime, b: datetime) -> Any:
    from sqlalchemy.dialects.postgresql import Range

    return Range(a, b, bounds="[)")


def test_move_turno_checks_conflicts_and_version(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    a = _turno(client, headers, efectivo.id, T0).get_json()["items"][0]
    b = _turno(client, headers, efectivo.id, T0 + timedelta(days=1)).get_json()["items"][0]
    onto_b = client.patch(f"/api/v1/turnos/{a['id']}", json={"inicio": b["inicio"], "fin": b["fin"]}, headers=headers | {"If-Match": '"1"'})
    assert onto_b.status_code == 409 and onto_b.get_json()["conflicto"]["id"] == b["id"]
    later = T0 + timedelta(hours=2)
    moved = client.patch(
        f"/api/v1/turnos/{a['id']}", json={"inicio": _iso(later), "fin": _iso(later + timedelta(hours=8))}, headers=headers | {"If-Match": '"1"'}
    )
    assert moved.status_code == 200 and moved.headers["ETag"] == '"2"'  # overlapping its own old hours is fine
    stale = client.patch(f"/api/v1/turnos/{a['id']}", json={"tipo": "reten"}, headers=headers | {"If-Match": '"1"'})
    assert stale.status_code == 412
    assert client.delete(f"/api/v1/turnos/{a['id']}", headers=headers).status_code == 204
    assert client.get(f"/api/v1/turnos/{a['id']}", headers=headers).status_code == 404
    with app.app_context():
        kinds = [e.event_type for e in db.session.query(Evento).order_by(Evento.id)]
    assert kinds == ["turnos_created", "turnos_created", "turno_updated", "turno_deleted"]


def test_a_turno_or_licencia_is_neither_given_nor_moved_to_a_deactivated_efectivo(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    working, gone = build.efectivo(), build.efectivo(activo=False)
    headers = build.headers(sup)
    refused = _turno(client, headers, gone.id, T0)
    assert refused.status_code == 409 and refused.get_json()["efectivo_id"] == gone.id
    turno = _turno(client, headers, working.id, T0).get_json()["items"][0]
    moved = client.patch(f"/api/v1/turnos/{turno['id']}", json={"efectivo_id": gone.id}, headers=headers)
    assert moved.status_code == 409 and moved.get_json()["efectivo_id"] == gone.id
    dry_run = client.post("/api/v1/turnos/comprobar", json={"efectivo_id": gone.id, "inicio": _iso(T0), "fin": _iso(T0 + timedelta(hours=8))}, headers=headers)
    assert dry_run.status_code == 409 and dry_run.get_json()["efectivo_id"] == gone.id  # as the create it previews
    assert client.get(f"/api/v1/turnos/{turno['id']}", headers=headers).get_json()["efectivo_id"] == working.id
    # Nor a leave: the planner would read it as someone to cover for.
    leave = {"efectivo_id": gone.id, "tipo": "vacaciones", "inicio": _iso(T0), "fin": _iso(T0 + timedelta(days=7))}
    no_leave = client.post("/api/v1/licencias", json=leave, headers=headers)
    assert no_leave.status_code == 409 and no_leave.get_json()["efectivo_id"] == gone.id
    assert client.get(f"/api/v1/licencias?efectivo_id={gone.id}", headers=headers).get_json()["total"] == 0


def test_check_endpoint_lists_conflicts_without_writing(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup)
    existing = _turno(client, headers, efectivo.id, T0 + timedelta(days=2)).get_json()["items"][0]
    body = {
        "efectivo_id": efectivo.id,
        "inicio": _iso(T0),
        "fin": _iso(T0 + timedelta(hours=8)),
        "repetir": {"cada_horas": 24, "hasta": _iso(T0 + timedelta(days=5))},
    }
    response = client.post("/api/v1/turnos/comprobar", json=body, headers=headers)
    assert response.status_code == 200
    data = response.get_json()
    assert len(data["ocurrencias"]) == 5 and [(c["id"], c["ocurrencia"]) for c in data["conflictos"]] == [(existing["id"], 2)]
    moving = client.post(
        "/api/v1/turnos/comprobar",
        json=body | {"repetir": None, "inicio": existing["inicio"], "fin": existing["fin"], "skip_turno": existing["id"]},
        headers=headers,
    )
    assert moving.get_json()["conflictos"] == []
    with app.app_context():
        assert db.session.query(Turno).count() == 1


def test_efectivo_reads_only_their_own_agenda(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    me = build.usuario(1)
    mine, other = build.efectivo(usuario_id=me.id), build.efectivo()
    headers = build.headers(sup)
    own = _turno(client, headers, mine.id, T0).get_json()["items"][0]
    theirs = _turno(client, headers, other.id, T0).get_json()["items"][0]
    mine_headers = build.headers(me)
    listed = client.get("/api/v1/turnos", headers=mine_headers).get_json()
    assert [t["id"] for t in listed["items"]] == [own["id"]]
    assert client.get(f"/api/v1/turnos/{theirs['id']}", headers=mine_headers).status_code == 403
    assert _turno(client, mine_headers, mine.id, T0 + timedelta(days=1)).status_code == 403
    window = client.get(f"/api/v1/turnos?desde={_iso(T0 + timedelta(days=1))}".replace("+", "%2B"), headers=headers).get_json()
    assert window["total"] == 0


def test_turnos_topic_reaches_supervisors_and_only_the_efectivo_concerned(app: Flask, build: Builders) -> None:
    from gad import policy

    sup, mine, other = build.usuario(2), build.usuario(1), build.usuario(1)
    payload = {"efectivo_id": 1, "usuario_id": mine.id, "unidad": "Móvil 1"}
    assert "turnos" in policy.visible_topics(mine)
    assert policy.can_see_event(sup, "turnos", payload)
    assert policy.can_see_event(mine, "turnos", payload)
    assert not policy.can_see_event(other, "turnos", payload)
    assert not policy.can_see_event(other, "turnos", payload | {"usuario_id": None})
    assert policy.can_see_event(other, "turnos", payload | {"antes_usuario_id": other.id})  # the turno was theirs


def test_a_turno_moved_to_another_efectivo_is_announced_to_the_one_who_had_it(client: FlaskClient, build: Builders) -> None:
    sup, before, after = build.usuario(2), build.usuario(1), build.usuario(1)
    mine, theirs = build.efectivo(usuario_id=before.id), build.efectivo(usuario_id=after.id)
    headers = build.headers(sup)
    turno = _turno(client, headers, mine.id, T0).get_json()["items"][0]
    assert client.patch(f"/api/v1/turnos/{turno['id']}", json={"efectivo_id": theirs.id}, headers=headers).status_code == 200

    def seen(usuario: Any) -> list[str]:
        frames = client.get("/api/v1/eventos/recientes?limit=50", headers=build.headers(usuario)).get_json()
        return [f["event_type"] for f in frames if f["topic"] == "turnos"]

    assert seen(before) == ["turno_updated", "turnos_created"]  # newest first: told it is no longer theirs
    assert seen(after) == ["turno_updated"]
    assert client.get(f"/api/v1/turnos/{turno['id']}", headers=build.headers(before)).status_code == 403


@pytest.mark.parametrize("path", ["/api/v1/turnos", "/api/v1/licencias", "/api/v1/eventos", "/api/v1/auditoria/export", "/api/v1/tasks"])
def test_a_window_that_ends_before_it_starts_is_422_naming_hasta(client: FlaskClient, build: Builders, path: str) -> None:
    """Not the database's "value out of range" with no field (the agendas' windows become ranges), nor an empty
    answer that reads as "nothing happened" (the event log and its export)."""
    headers = build.headers(build.usuario(3))
    response = client.get(path, query_string={"desde": "2027-01-02T00:00:00Z", "hasta": "2027-01-01T00:00:00Z"}, headers=headers)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert [error["field"] for error in response.get_json()["errors"]] == ["query.hasta"]
    same = client.get(path, query_string={"desde": "2027-01-01T00:00:00Z", "hasta": "2027-01-01T00:00:00Z"}, headers=headers)
    assert same.status_code == 200
