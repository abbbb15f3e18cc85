"""Notifications: the ledger written with its cause, answers, "no puedo" re-dispatch, escalation once, alerts."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from gad import policy
from gad.extensions import db
from gad.models import Asignacion, Efectivo, Evento, Notificacion, NotificacionEntrega, Usuario, utcnow
from gad.services import alertas, notificaciones
from tests.builders import Builders

SOL = (40.4169, -3.7035)


def _events(app: Flask, event_type: str) -> list[Evento]:
    with app.app_context():
        return list(db.session.scalars(db.select(Evento).where(Evento.event_type == event_type).order_by(Evento.id)))


def _ledger(app: Flask, **where: Any) -> list[Notificacion]:
    with app.app_context():
        query = db.select(Notificacion).order_by(Notificacion.id)
        for name, value in where.items():
            query = query.where(getattr(Notificacion, name) == value)
        rows = list(db.session.scalars(query))
        for row in rows:
            db.session.expunge(row)
        return rows


def _assign(client: FlaskClient, build: Builders, sup: Any, tarea: Any, *efectivos: Any) -> Any:
    return client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [e.id for e in efectivos]}, headers=build.headers(sup))


def _ack(client: FlaskClient, build: Builders, usuario: Any, notificacion_id: int, respuesta: str, motivo: str | None = None) -> Any:
    body: dict[str, Any] = {"respuesta": respuesta}
    if motivo is not None:
        body["motivo"] = motivo
    return client.post(f"/api/v1/notificaciones/{notificacion_id}/ack", json=body, headers=build.headers(usuario))


# --- the ledger and its cause ------------------------------------------------------------------


def test_assignment_notifies_the_efectivos_usuario_in_the_same_transaction(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup, officer = build.usuario(2), build.usuario(1)
    linked, unlinked = build.efectivo(usuario_id=officer.id), build.efectivo()
    tarea = build.tarea(sup, prioridad=4)
    assert _assign(client, build, sup, tarea, linked, unlinked).status_code == 200
    [n] = _ledger(app)
    assert (n.usuario_id, n.causa, n.tarea_id, n.efectivo_id, n.prioridad, n.requiere_respuesta) == (officer.id, "asignacion", tarea.id, linked.id, 4, True)
    # The default deadline for an assignment is 300 s after it was written.
    assert n.escalar_en is not None and (n.escalar_en - n.creada_en) == timedelta(seconds=300)
    [frame] = _events(app, "notification")
    assert frame.payload["id"] == n.id and frame.payload["usuario_id"] == officer.id and frame.payload["privada"] is True
    with app.app_context():
        [entrega] = db.session.scalars(db.select(NotificacionEntrega)).all()
        assert (entrega.notificacion_id, entrega.canal, entrega.estado) == (n.id, "inapp", "enviada")

    listing = client.get("/api/v1/notificaciones?pendientes=true", headers=build.headers(officer)).get_json()
    assert listing["total"] == 1 and listing["no_leidas"] == 1
    assert listing["items"][0]["estado"] == "creada" and listing["items"][0]["titulo"] == f"Nueva asignación: {tarea.codigo}"


def test_a_refused_assignment_notifies_nobody(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup, officer = build.usuario(2), build.usuario(1)
    busy = build.efectivo(usuario_id=officer.id, estado_disponibilidad="no_disponible")
    response = _assign(client, build, sup, build.tarea(sup), busy)
    assert response.status_code == 409
    assert _ledger(app) == [] and _events(app, "notification") == []


def test_efectivo_reads_only_their_own_notifications(client: FlaskClient, build: Builders) -> None:
    a, b, sup = build.usuario(1), build.usuario(1), build.usuario(2)
    mine = build.notificacion(a)
    build.notificacion(b)
    assert client.get(f"/api/v1/notificaciones/{mine.id}", headers=build.headers(b)).status_code == 404
    assert client.get(f"/api/v1/notificaciones?usuario_id={a.id}", headers=build.headers(b)).status_code == 403
    assert client.get(f"/api/v1/notificaciones?usuario_id={a.id}", headers=build.headers(sup)).get_json()["total"] == 1
    # A supervisor reads it but may not answer for the recipient.
    assert client.get(f"/api/v1/notificaciones/{mine.id}", headers=build.headers(sup)).status_code == 200
    assert _ack(client, build, sup, mine.id, "acepto").status_code == 403


# --- answers ---------------------------------------------------------------------------------


def test_answers_are_idempotent_and_a_different_second_answer_is_409(app: Flask, client: FlaskClient, build: Builders) -> None:
    officer = build.usuario(1)
    n = build.notificacion(officer)
    with_reason = _ack(client, build, officer, n.id, "leida", "no me da tiempo")  # a reason for no answer would be lost
    assert with_reason.status_code == 422 and with_reason.get_json()["errors"][0]["field"] == "body.motivo"
    read = _ack(client, build, officer, n.id, "leida")
    assert read.status_code == 200 and read.get_json()["estado"] == "leida" and read.get_json()["respuesta"] is None
    first = _ack(client, build, officer, n.id, "acepto")
    assert first.status_code == 200 and first.get_json()["estado"] == "aceptada"
    again = _ack(client, build, officer, n.id, "acepto")
    assert again.status_code == 200 and again.get_json()["respondida_en"] == first.get_json()["respondida_en"]
    other = _ack(client, build, officer, n.id, "no_puedo", "otra cosa")
    assert other.status_code == 409 and other.mimetype == "application/problem+json"
    assert other.get_json()["respuesta_actual"] == "acepto"
    assert len(_events(app, "notification_answered")) == 1
    assert client.get("/api/v1/notificaciones?no_leidas=true", headers=build.headers(officer)).get_json()["no_leidas"] == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"respuesta": "quizas"}, {"respuesta": "acepto", "extra": 1}, {"respuesta": "no_puedo", "motivo": "x" * 501}],
)
def test_bad_answers_are_422(client: FlaskClient, build: Builders, body: dict[str, Any]) -> None:
    officer = build.usuario(1)
    n = build.notificacion(officer)
    response = client.post(f"/api/v1/notificaciones/{n.id}/ack", json=body, headers=build.headers(officer))
    assert response.status_code == 422 and response.mimetype == "application/problem+json"


def test_unknown_notification_is_404(client: FlaskClient, build: Builders) -> None:
    assert _ack(client, build, build.usuario(1), 999_999, "acepto").status_code == 404


def test_no_puedo_releases_the_assignment_and_tells_delegado_and_supervisors(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup, delegado, officer = build.usuario(2), build.usuario(1), build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    tarea = build.tarea(sup, delegado_usuario_id=delegado.id, estado="en_curso")
    assert _assign(client, build, sup, tarea, efectivo).status_code == 200
    [n] = _ledger(app, causa="asignacion")
    response = _ack(client, build, officer, n.id, "no_puedo", "Vehículo averiado")
    assert response.status_code == 200 and response.get_json()["estado"] == "rechazada"
    with app.app_context():
        asignacion = db.session.scalars(db.select(Asignacion)).one()
        assert asignacion.liberado_en is not None
        assert db.session.get(Efectivo, efectivo.id).estado_disponibilidad == "disponible"  # type: ignore[union-attr]
    told = _ledger(app, causa="rechazo")
    assert sorted(x.usuario_id for x in told) == sorted([delegado.id, sup.id])
    assert all(x.origen_id == n.id and "Vehículo averiado" in x.texto for x in told)
    assert _events(app, "task_unassigned")[-1].payload["motivo"] == "no_puedo"
    # Accepting it afterwards is a different answer.
    assert _ack(client, build, officer, n.id, "acepto").status_code == 409
    # The notice to the delegado asks for no answer: it can be read, not accepted or declined.
    notice = next(x for x in told if x.usuario_id == delegado.id)
    for respuesta in ("acepto", "no_puedo"):
        refused = _ack(client, build, delegado, notice.id, respuesta)
        assert refused.status_code == 409 and "asks for no answer" in refused.get_json()["detail"]
    assert _ack(client, build, delegado, notice.id, "leida").get_json()["estado"] == "leida"
    assert _events(app, "notification_answered")[-1].payload["id"] == n.id  # only the officer's answer


def test_answer_to_an_assignment_released_meanwhile_is_409(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup, officer = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    tarea = build.tarea(sup)
    assert _assign(client, build, sup, tarea, efectivo).status_code == 200
    assert client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", headers=build.headers(sup)).status_code == 200
    [n] = _ledger(app, causa="asignacion")
    assert _ack(client, build, officer, n.id, "acepto").status_code == 409


# --- taken off a tarea -------------------------------------------------------------------------


def test_unassigned_efectivo_is_told_informationally_on_every_channel_and_it_never_escalates(app_with: Any, build: Builders) -> None:
    """Even a deadline configured for the causa is never set: nothing to answer, nothing to escalate."""
    from gad.services import canales

    canales.register_canal(FlakyCanal(failures=0))
    custom = app_with(NOTIF_PLAZOS={"asignacion": 300, "desasignacion": 1}, NOTIF_CANALES=["inapp", "prueba"])
    client = custom.test_client()
    sup, officer = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    tarea = build.tarea(sup, prioridad=4, descripcion="Detalle que ya no le corresponde")
    assert _assign(client, build, sup, tarea, efectivo).status_code == 200
    assert client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", headers=build.headers(sup)).status_code == 200
    [n] = _ledger(custom, causa="desasignacion")
    with custom.app_context():
        asignacion_id = db.session.scalars(db.select(Asignacion.id)).one()
    assert (n.usuario_id, n.tarea_id, n.efectivo_id, n.asignacion_id) == (officer.id, tarea.id, efectivo.id, asignacion_id)
    assert (n.prioridad, n.creado_por_usuario_id) == (4, sup.id)
    assert (n.requiere_respuesta, n.escalar_en) == (False, None)
    assert n.titulo == f"Desasignado: {tarea.codigo}" and tarea.titulo in n.texto and "Detalle" not in n.texto
    with custom.app_context():
        canales_de_n = {e.canal: e.estado for e in db.session.scalars(db.select(NotificacionEntrega).where(NotificacionEntrega.notificacion_id == n.id))}
        assert canales_de_n == {"inapp": "enviada", "prueba": "pendiente"}  # outbound too: the officer may be on the road
        assert notificaciones.escalate_due(now=datetime.now(UTC) + timedelta(days=1)) == 1  # the assignment's, dropped: released
        db.session.commit()
    assert _events(custom, "notification_escalated") == [] and _ledger(custom, causa="escalacion") == []
    # Read, yes; an answer to an assignment that no longer exists, no.
    assert _ack(client, build, officer, n.id, "leida").get_json()["estado"] == "leida"
    assert _ack(client, build, officer, n.id, "acepto").status_code == 409


def test_release_notice_tells_a_delegado_they_keep_the_tarea_and_others_not_to_go(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup, delegado, officer = build.usuario(2), build.usuario(1), build.usuario(1)
    suyo, otro = build.efectivo(usuario_id=delegado.id), build.efectivo(usuario_id=officer.id)
    tarea = build.tarea(sup, titulo="Vigilancia del puerto", delegado_usuario_id=delegado.id)
    assert _assign(client, build, sup, tarea, suyo, otro).status_code == 200
    for efectivo in (suyo, otro):
        assert client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", headers=build.headers(sup)).status_code == 200
    textos = {n.usuario_id: n.texto for n in _ledger(app, causa="desasignacion")}
    assert textos == {
        delegado.id: "Vigilancia del puerto — ya no está asignado a ella como efectivo; sigue siendo su delegado.",
        officer.id: "Vigilancia del puerto — ya no tiene esta tarea asignada: no acuda.",
    }
    # What the text says holds: the delegado still reads the tarea, the other efectivo no longer does.
    assert client.get(f"/api/v1/tasks/{tarea.id}", headers=build.headers(delegado)).status_code == 200
    assert client.get(f"/api/v1/tasks/{tarea.id}", headers=build.headers(officer)).status_code == 403


def test_nobody_is_told_of_a_release_they_caused_or_that_has_no_usuario(app: Flask, client: FlaskClient, build: Builders) -> None:
    """A "no puedo" releases the efectivo who asked; an efectivo with no usuario has no phone to tell; a
    supervisor taking their own efectivo off did it themselves."""
    sup, officer = build.usuario(2), build.usuario(1)
    declining, unlinked, own = build.efectivo(usuario_id=officer.id), build.efectivo(), build.efectivo(usuario_id=sup.id)
    tarea = build.tarea(sup)
    assert _assign(client, build, sup, tarea, declining, unlinked, own).status_code == 200
    [asked] = _ledger(app, causa="asignacion", usuario_id=officer.id)
    assert _ack(client, build, officer, asked.id, "no_puedo").status_code == 200
    for efectivo in (unlinked, own):
        assert client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{efectivo.id}", headers=build.headers(sup)).status_code == 200
    assert len(_events(app, "task_unassigned")) == 3
    assert _ledger(app, causa="desasignacion") == []


# --- emergencies -------------------------------------------------------------------------------


def _placed(build: Builders, dlat: float, **overrides: Any) -> Any:
    return build.efectivo(lat=SOL[0] + dlat, lon=SOL[1], posicion_en=datetime.now(UTC), **overrides)


def test_emergency_notifies_the_assigned_and_supervisors_and_no_puedo_redispatches(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup, first, second, caller = build.usuario(2), build.usuario(1), build.usuario(1), build.usuario(1)
    near = _placed(build, 0.001, usuario_id=first.id)
    next_near = _placed(build, 0.002, usuario_id=second.id)
    _placed(build, 0.003)
    # Raised by a usuario with no efectivo of their own (an officer's own SOS never sends that officer).
    response = client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1]}, headers=build.headers(caller))
    assert response.status_code == 201
    tarea_id = response.get_json()["tarea"]["id"]
    [asked] = _ledger(app, causa="emergencia", usuario_id=first.id)
    assert asked.efectivo_id == near.id and asked.requiere_respuesta
    assert (asked.escalar_en - asked.creada_en) == timedelta(seconds=60)  # type: ignore[operator]
    [told] = _ledger(app, causa="emergencia", usuario_id=sup.id)
    assert not told.requiere_respuesta and told.tarea_id == tarea_id

    assert _ack(client, build, first, asked.id, "no_puedo", "Fuera de zona").status_code == 200
    [reasked] = _ledger(app, causa="emergencia", usuario_id=second.id)
    assert reasked.efectivo_id == next_near.id and reasked.tarea_id == tarea_id
    with app.app_context():
        active = db.session.scalars(db.select(Asignacion.efectivo_id).where(Asignacion.tarea_id == tarea_id, Asignacion.liberado_en.is_(None))).all()
        assert active == [next_near.id]
        assert db.session.get(Efectivo, near.id).estado_disponibilidad == "disponible"  # type: ignore[union-attr]


def test_emergency_tells_the_supervisors_on_shift_or_every_supervisor_when_nobody_is(app: Flask, client: FlaskClient, build: Builders) -> None:
    on_shift, off_shift, caller = build.usuario(2), build.usuario(2), build.usuario(1)
    build.turno(build.efectivo(usuario_id=on_shift.id), utcnow() - timedelta(hours=1))
    build.efectivo(usuario_id=off_shift.id)
    assert client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1]}, headers=build.headers(caller)).status_code == 201
    told = {n.usuario_id for n in _ledger(app, causa="emergencia") if not n.requiere_respuesta}
    assert told == {on_shift.id}
    with app.app_context():  # the rota empties: nobody on shift must not mean nobody told
        db.session.execute(db.text("DELETE FROM turnos"))
        db.session.commit()
    assert client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1]}, headers=build.headers(caller)).status_code == 201
    told_now = Counter(n.usuario_id for n in _ledger(app, causa="emergencia") if not n.requiere_respuesta)
    assert told_now == Counter({on_shift.id: 2, off_shift.id: 1})


# --- escalation --------------------------------------------------------------------------------


def test_escalation_fires_once_for_unanswered_and_never_for_answered_or_released(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup, a, b, c = build.usuario(2), build.usuario(1), build.usuario(1), build.usuario(1)
    ea, eb, ec = (build.efectivo(usuario_id=u.id) for u in (a, b, c))
    tarea = build.tarea(sup)
    assert _assign(client, build, sup, tarea, ea, eb, ec).status_code == 200
    by_user = {n.usuario_id: n for n in _ledger(app, causa="asignacion")}
    assert _ack(client, build, b, by_user[b.id].id, "acepto").status_code == 200
    assert client.delete(f"/api/v1/tasks/{tarea.id}/efectivos/{ec.id}", headers=build.headers(sup)).status_code == 200
    later = datetime.now(UTC) + timedelta(seconds=301)
    with app.app_context():
        assert notificaciones.escalate_due(now=later) == 2  # a: escalated; c: released, deadline dropped
        db.session.commit()
        assert notificaciones.escalate_due(now=later) == 0
        db.session.commit()
    [escalated] = _events(app, "notification_escalated")
    assert escalated.payload["id"] == by_user[a.id].id
    [escalation] = _ledger(app, causa="escalacion")
    assert escalation.usuario_id == sup.id and escalation.origen_id == by_user[a.id].id
    assert _ledger(app, id=by_user[c.id].id)[0].escalar_en is None


def test_pendientes_lists_only_what_still_waits_for_an_answer(app: Flask, client: FlaskClient, build: Builders) -> None:
    """What the phone asks again after a reload: unanswered, assignment still on, alert still open; escalated included."""
    sup, officer = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    hour = timedelta(hours=1)
    # Five tareas apart in time: an efectivo is never booked on two overlapping ones.
    waiting, escalated, answered, taken_off, ended = (
        build.tarea(sup, inicio_programado=utcnow() + (1 + 4 * n) * hour, fin_programado=utcnow() + (3 + 4 * n) * hour) for n in range(5)
    )
    for tarea in (waiting, escalated, answered, taken_off, ended):
        assert _assign(client, build, sup, tarea, efectivo).status_code == 200
    ids = {n.tarea_id: n.id for n in _ledger(app, causa="asignacion")}
    assert _ack(client, build, officer, ids[answered.id], "acepto").status_code == 200
    assert client.delete(f"/api/v1/tasks/{taken_off.id}/efectivos/{efectivo.id}", headers=build.headers(sup)).status_code == 200
    assert client.post(f"/api/v1/tasks/{ended.id}/estado", json={"estado": "cancelada"}, headers=build.headers(sup)).status_code == 200
    with app.app_context():
        db.session.execute(db.update(Notificacion).where(Notificacion.tarea_id != escalated.id).values(escalar_en=None))
        assert notificaciones.escalate_due(now=datetime.now(UTC) + timedelta(days=1)) == 1
        db.session.commit()
    open_alert, closed_alert = (
        client.post(
            "/api/v1/alertas", json={"tipo": "aviso", "texto": texto, "destino": "usuarios", "usuario_ids": [officer.id]}, headers=build.headers(sup)
        ).get_json()
        for texto in ("Reunión a las 8", "Corte de tráfico")
    )
    assert client.post(f"/api/v1/alertas/{closed_alert['id']}/cerrar", headers=build.headers(sup)).status_code == 200

    listing = client.get("/api/v1/notificaciones?pendientes=true", headers=build.headers(officer)).get_json()
    assert listing["total"] == 3
    assert [(n["tarea_id"], n["alerta_id"]) for n in listing["items"]] == [(None, open_alert["id"]), (escalated.id, None), (waiting.id, None)]
    assert listing["items"][1]["escalada_en"] is not None
    # Each one left out is refused or moot: the released ones' answer is 409.
    assert _ack(client, build, officer, ids[taken_off.id], "acepto").status_code == 409
    assert _ack(client, build, officer, ids[ended.id], "acepto").status_code == 409


def test_deadlines_are_configurable_per_causa_and_prioridad(database_url: str, build: Builders) -> None:
    from tests.conftest import make_app

    custom = make_app(database_url, NOTIF_PLAZOS={"asignacion": 30, "asignacion:5": 5, "alerta": 0})
    with custom.app_context():
        assert notificaciones.deadline_s("asignacion", 3) == 30
        assert notificaciones.deadline_s("asignacion", 5) == 5
        assert notificaciones.deadline_s("alerta", 5) is None
        assert notificaciones.deadline_s("emergencia", 5) is None


def test_deadline_setting_is_parsed_and_refused_when_malformed() -> None:
    from config import ConfigError, parse_deadlines

    assert parse_deadlines("emergencia=60, asignacion:5=120,alerta=0") == {"emergencia": 60, "asignacion:5": 120, "alerta": 0}
    for bad in ("emergencia", "emergencia=-1", "asignacion:9=10", "=5", "emergencia=soon"):
        with pytest.raises(ConfigError):
            parse_deadlines(bad)


# --- alerts ----------------------------------------------------------------------------------


def test_alert_to_a_unidad_tally_resend_and_close(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    members = [build.usuario(1) for _ in range(3)]
    for member in members:
        build.efectivo(usuario_id=member.id, unidad="Móvil 7")
    build.efectivo(usuario_id=build.usuario(1).id, unidad="Móvil 8")
    created = client.post(
        "/api/v1/alertas",
        json={"tipo": "refuerzos", "texto": "Se necesitan refuerzos en Sol", "destino": "unidad", "unidad": "Móvil 7"},
        headers=build.headers(sup),
    )
    assert created.status_code == 201, created.get_json()
    alerta = created.get_json()
    assert (alerta["total"], alerta["pendientes"], alerta["prioridad"]) == (3, 3, 4)
    ledger = {n.usuario_id: n for n in _ledger(app, causa="alerta")}
    assert set(ledger) == {m.id for m in members}
    assert _ack(client, build, members[0], ledger[members[0].id].id, "acepto").status_code == 200
    assert _ack(client, build, members[1], ledger[members[1].id].id, "no_puedo", "Sin vehículo").status_code == 200
    detail = client.get(f"/api/v1/alertas/{alerta['id']}", headers=build.headers(sup)).get_json()
    assert (detail["confirmados"], detail["no_pueden"], detail["pendientes"]) == (1, 1, 1)
    assert [f["usuario_id"] for f in detail["faltan"]] == [members[2].id]
    tallies = _events(app, "alert_tally")
    assert [(t.payload["confirmados"], t.payload["no_pueden"]) for t in tallies] == [(1, 0), (1, 1)]

    before = len(_events(app, "notification"))
    resent = client.post(f"/api/v1/alertas/{alerta['id']}/reenviar", headers=build.headers(sup)).get_json()
    assert resent["faltan"][0]["reenvios"] == 1
    again = _events(app, "notification")[before:]
    assert [(e.payload["usuario_id"], e.payload["reenvio"]) for e in again] == [(members[2].id, 1)]

    closed = client.post(f"/api/v1/alertas/{alerta['id']}/cerrar", headers=build.headers(sup))
    assert closed.status_code == 200 and closed.get_json()["cerrada_en"] is not None
    # Only the one still asked is told the question is gone, and only on their own sockets.
    [withdrawn] = _events(app, "notification_withdrawn")
    assert (withdrawn.payload["id"], withdrawn.payload["usuario_id"], withdrawn.payload["privada"]) == (ledger[members[2].id].id, members[2].id, True)
    with app.app_context():
        assert policy.can_see_event(members[2], "notificaciones", withdrawn.payload)
        assert not policy.can_see_event(members[0], "notificaciones", withdrawn.payload)
        assert not policy.can_see_event(sup, "notificaciones", withdrawn.payload)
    assert client.post(f"/api/v1/alertas/{alerta['id']}/reenviar", headers=build.headers(sup)).status_code == 409
    assert client.post(f"/api/v1/alertas/{alerta['id']}/cerrar", headers=build.headers(sup)).status_code == 200  # idempotent
    at_close = client.get(f"/api/v1/alertas/{alerta['id']}", headers=build.headers(sup)).get_json()
    assert at_close["entregadas"] == 2 and at_close["faltan"][0]["entregada_en"] is None
    # Closed, its tally is final: a late answer is 409 and changes nothing; reading it (which proves the phone got
    # it, after the close), a late delivery report and repeating an answer still work.
    tallies_before = len(_events(app, "alert_tally"))
    with app.app_context():  # the phone reports it only now: the notification records it, the closed tally does not
        assert notificaciones.mark_delivered(members[2].id, [ledger[members[2].id].id]) == [ledger[members[2].id].id]
        db.session.commit()
    assert client.get(f"/api/v1/alertas/{alerta['id']}", headers=build.headers(sup)).get_json() == at_close
    late = _ack(client, build, members[2], ledger[members[2].id].id, "no_puedo")
    assert late.status_code == 409 and late.get_json()["respuesta_actual"] is None
    assert _ack(client, build, members[2], ledger[members[2].id].id, "leida").status_code == 200
    assert _ack(client, build, members[0], ledger[members[0].id].id, "acepto").status_code == 200
    detail = client.get(f"/api/v1/alertas/{alerta['id']}", headers=build.headers(sup)).get_json()
    assert detail == at_close
    assert len(_events(app, "alert_tally")) == tallies_before


def test_a_delivery_report_that_read_the_clock_before_the_close_agrees_with_the_tally_the_close_announced(
    app: Flask, client: FlaskClient, build: Builders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phone's report and the close race: whichever takes the notification's lock first, the tally the close
    announces stays the alert's tally afterwards, and the report still marks the notification."""
    sup, member = build.usuario(2), build.usuario(1)
    build.efectivo(usuario_id=member.id, unidad="Móvil 7")
    created = client.post(
        "/api/v1/alertas", json={"tipo": "refuerzos", "texto": "Refuerzos", "destino": "unidad", "unidad": "Móvil 7"}, headers=build.headers(sup)
    )
    assert created.status_code == 201, created.get_json()
    alerta_id = created.get_json()["id"]
    [n] = _ledger(app, causa="alerta")
    clock_read, go, closed, release = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    reported: list[list[int]] = []

    def slow_clock() -> datetime:
        # The report reads the time, then the close gets in before the report writes it.
        now = utcnow()
        if threading.current_thread().name == "report":
            clock_read.set()
            go.wait(10)
        return now

    def report_delivery() -> None:
        with app.app_context():
            reported.append(notificaciones.mark_delivered(member.id, [n.id]))
            db.session.commit()

    def close_and_hold() -> None:
        with app.app_context():
            alertas.close(db.session.get(Usuario, sup.id), alerta_id)
            closed.set()
            release.wait(10)
            db.session.commit()

    def someone_waits_on_a_lock() -> bool:
        with app.app_context():
            return bool(db.session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")))

    monkeypatch.setattr(notificaciones, "utcnow", slow_clock)
    reporter, closer = threading.Thread(target=report_delivery, name="report"), threading.Thread(target=close_and_hold, name="close")
    reporter.start()
    assert clock_read.wait(10)
    closer.start()
    deadline = time.monotonic() + 10
    while not (closed.is_set() or someone_waits_on_a_lock()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    go.set()
    release.set()
    closer.join(10)
    reporter.join(10)
    assert not closer.is_alive() and not reporter.is_alive() and reported == [[n.id]]
    detail = client.get(f"/api/v1/alertas/{alerta_id}", headers=build.headers(sup)).get_json()
    [announced] = _events(app, "alert_closed")
    assert detail["cerrada_en"] is not None and announced.payload["entregadas"] == detail["entregadas"]
    assert [row.entregada_en is not None for row in _ledger(app, causa="alerta")] == [True]


def test_closing_an_alert_while_the_sweep_escalates_it_neither_deadlocks(
    app: Flask, client: FlaskClient, build: Builders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a deadline for alerts (NOTIF_PLAZOS alerta=…), the sweep holds an unanswered notification and writes its
    escalation, which names the alert; a close meanwhile holds the alert and waits for that notification. The
    escalation's foreign key waited for the close's lock on the alert: a deadlock, one of the two aborted."""
    sup, member = build.usuario(2), build.usuario(1)
    created = client.post(
        "/api/v1/alertas", json={"tipo": "refuerzos", "texto": "Refuerzos", "destino": "usuarios", "usuario_ids": [member.id]}, headers=build.headers(sup)
    )
    assert created.status_code == 201, created.get_json()
    alerta_id = created.get_json()["id"]
    [n] = _ledger(app, causa="alerta")
    with app.app_context():
        db.session.execute(text("UPDATE notificaciones SET escalar_en = now() - interval '1 minute' WHERE id = :id"), {"id": n.id})
        db.session.commit()
    escalating, go = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    write = notificaciones.write

    def write_after_the_close_waits(rows: list[Notificacion], now: datetime) -> list[Notificacion]:
        if threading.current_thread().name == "sweep":
            escalating.set()
            go.wait(10)
        return write(rows, now)

    def in_context(work: Any) -> Any:
        def run() -> None:
            try:
                with app.app_context():
                    work()
                    db.session.commit()
            except BaseException as exc:  # reported by the test below
                failures.append(exc)

        return run

    def someone_waits_on_a_lock() -> bool:
        with app.app_context():
            return bool(db.session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")))

    monkeypatch.setattr(notificaciones, "write", write_after_the_close_waits)
    sweep = threading.Thread(target=in_context(notificaciones.escalate_due), name="sweep")
    closer = threading.Thread(target=in_context(lambda: alertas.close(db.session.get(Usuario, sup.id), alerta_id)), name="close")
    sweep.start()
    assert escalating.wait(10)
    closer.start()
    deadline = time.monotonic() + 10
    while not someone_waits_on_a_lock():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    go.set()
    sweep.join(15)
    closer.join(15)
    assert failures == []
    detail = client.get(f"/api/v1/alertas/{alerta_id}", headers=build.headers(sup)).get_json()
    assert detail["cerrada_en"] is not None
    assert [row.usuario_id for row in _ledger(app, causa="escalacion")] == [sup.id]


def test_alert_to_everyone_skips_the_sender_and_inactive_usuarios(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    others = [build.usuario(1), build.usuario(3)]
    build.usuario(1, activo=False)
    created = client.post("/api/v1/alertas", json={"tipo": "codigo_rojo", "texto": "Código rojo", "destino": "todos"}, headers=build.headers(sup))
    assert created.status_code == 201 and created.get_json()["prioridad"] == 5
    assert Counter(n.usuario_id for n in _ledger(app, causa="alerta")) == Counter(u.id for u in others)


def test_the_sender_is_never_among_an_alerts_recipients(app: Flask, client: FlaskClient, build: Builders) -> None:
    """A supervisor who is also an efectivo of the unidad would wait on their own answer in the tally."""
    sup, member = build.usuario(2), build.usuario(1)
    build.efectivo(usuario_id=sup.id, unidad="Móvil 7")
    build.efectivo(usuario_id=member.id, unidad="Móvil 7")
    created = client.post("/api/v1/alertas", json={"tipo": "aviso", "texto": "Relevo", "destino": "unidad", "unidad": "Móvil 7"}, headers=build.headers(sup))
    assert created.status_code == 201 and created.get_json()["total"] == 1
    assert [n.usuario_id for n in _ledger(app, causa="alerta")] == [member.id]
    named = client.post(
        "/api/v1/alertas", json={"tipo": "aviso", "texto": "x", "destino": "usuarios", "usuario_ids": [member.id, sup.id]}, headers=build.headers(sup)
    )
    assert named.status_code == 422 and named.get_json()["errors"][0]["field"] == "body.usuario_ids"
    assert named.get_json()["errors"][0]["type"] == "sender"
    # A unidad whose only member is the sender reaches nobody: said, not sent to no one.
    alone = build.usuario(2)
    build.efectivo(usuario_id=alone.id, unidad="Móvil 9")
    nobody = client.post("/api/v1/alertas", json={"tipo": "aviso", "texto": "x", "destino": "unidad", "unidad": "Móvil 9"}, headers=build.headers(alone))
    assert nobody.status_code == 422 and nobody.get_json()["errors"][0]["field"] == "body.destino"
    assert len(_ledger(app, causa="alerta")) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"tipo": "aviso", "texto": "x", "destino": "unidad"},
        {"tipo": "aviso", "texto": "x", "destino": "usuarios"},
        {"tipo": "aviso", "texto": "x", "destino": "todos", "unidad": "Móvil 1"},
        {"tipo": "alarma", "texto": "x", "destino": "todos"},
        {"tipo": "aviso", "texto": "", "destino": "todos"},
        {"tipo": "aviso", "texto": "x", "destino": "usuarios", "usuario_ids": [987654]},
        {"tipo": "aviso", "texto": "x", "destino": "unidad", "unidad": "Nadie"},
    ],
)
def test_bad_alerts_are_422(client: FlaskClient, build: Builders, body: dict[str, Any]) -> None:
    response = client.post("/api/v1/alertas", json=body, headers=build.headers(build.usuario(2)))
    assert response.status_code == 422 and response.mimetype == "application/problem+json"


def test_delivery_report_marks_only_the_usuarios_own_notifications(app: Flask, build: Builders) -> None:
    a, b = build.usuario(1), build.usuario(1)
    na, nb = build.notificacion(a), build.notificacion(b)
    with app.app_context():
        assert notificaciones.mark_delivered(a.id, [na.id, nb.id]) == [na.id]
        assert notificaciones.mark_delivered(a.id, [na.id]) == []
        db.session.commit()
    assert _ledger(app, id=na.id)[0].entregada_en is not None
    assert _ledger(app, id=nb.id)[0].entregada_en is None


# --- outbound channels -------------------------------------------------------------------------


class FlakyCanal:
    """An outbound channel (as Telegram would be) whose far end is down for its first ``failures`` calls."""

    name = "prueba"
    transactional = False

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[int, str]] = []

    def send(self, session: Any, notificacion: Any, payload: dict[str, Any]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("far end down")
        self.sent.append((notificacion.id, payload["titulo"]))


def test_outbound_channel_is_retried_with_backoff_and_recorded(database_url: str, build: Builders) -> None:
    from gad.services import canales
    from tests.conftest import make_app

    canal = FlakyCanal(failures=2)
    canales.register_canal(canal)
    app = make_app(database_url, NOTIF_CANALES=["inapp", "prueba"], NOTIF_REINTENTOS=3)
    officer = build.usuario(1)
    with app.app_context():
        [n] = notificaciones.notify([officer.id], causa=notificaciones.CausaNotificacion.ALERTA, titulo="Aviso", texto="t", prioridad=3, actor_id=None)
        db.session.commit()
        start = n.creada_en
        assert notificaciones.deliver_outbound(now=start) == 1  # fails: retry in 2 s
        db.session.commit()
        assert notificaciones.deliver_outbound(now=start + timedelta(seconds=1)) == 0  # not due yet
        assert notificaciones.deliver_outbound(now=start + timedelta(seconds=2)) == 1  # fails: retry in 4 s
        db.session.commit()
        assert notificaciones.deliver_outbound(now=start + timedelta(seconds=6)) == 1  # succeeds
        db.session.commit()
        entregas = {e.canal: e for e in db.session.scalars(db.select(NotificacionEntrega))}
        assert (entregas["prueba"].estado, entregas["prueba"].intentos, entregas["prueba"].ultimo_error) == ("enviada", 3, "ConnectionError: far end down")
        assert entregas["inapp"].estado == "enviada"
        assert canal.sent == [(n.id, "Aviso")]

        canal.failures = 5
        [m] = notificaciones.notify([officer.id], causa=notificaciones.CausaNotificacion.ALERTA, titulo="Otro", texto="t", prioridad=3, actor_id=None)
        db.session.commit()
        for step in (0, 2, 6):
            notificaciones.deliver_outbound(now=m.creada_en + timedelta(seconds=step))
            db.session.commit()
        failed = db.session.scalars(
            db.select(NotificacionEntrega).where(NotificacionEntrega.notificacion_id == m.id, NotificacionEntrega.canal == "prueba")
        ).one()
        assert (failed.estado, failed.intentos, failed.proximo_intento_en) == ("fallida", 3, None)


def test_unknown_channel_name_is_refused() -> None:
    from gad.services import canales

    with pytest.raises(LookupError, match="telegrama"):
        canales.active(["inapp", "telegrama"])


def test_sweeper_wakes_at_the_next_deadline_and_never_spins_on_rows_another_process_holds() -> None:
    from gad.background import pause_after
    from gad.models import utcnow

    started = utcnow()
    assert pause_after(1.0, None, started) == 1.0
    assert pause_after(1.0, started - timedelta(seconds=5), started) == 1.0  # due, held elsewhere: the tick
    assert pause_after(1.0, started, started) == 1.0
    soon = pause_after(1.0, utcnow() + timedelta(milliseconds=200), started)
    assert 0.1 < soon <= 0.21
    assert pause_after(1.0, utcnow() + timedelta(seconds=30), started) == 1.0
    # Became due while the sweep was working: go again at once.
    assert pause_after(1.0, started + timedelta(microseconds=1), started) == 0.005


def test_a_supervisor_reads_one_usuarios_notifications_or_everyones_never_both_at_once(client: FlaskClient, build: Builders) -> None:
    """``todos=true`` beside ``usuario_id`` answered everyone's list without a word, and the caller read it as that
    usuario's."""
    sup = build.usuario(2)
    ana, luis = build.usuario(1), build.usuario(1)
    headers = build.headers(sup)
    sent = client.post(
        "/api/v1/alertas", json={"tipo": "aviso", "texto": "Relevo a las 22:00", "destino": "usuarios", "usuario_ids": [ana.id, luis.id]}, headers=headers
    )
    assert sent.status_code == 201, sent.get_json()
    everyone = client.get("/api/v1/notificaciones?todos=true", headers=headers).get_json()["items"]
    assert {n["usuario_id"] for n in everyone} >= {ana.id, luis.id}
    only_ana = client.get(f"/api/v1/notificaciones?usuario_id={ana.id}", headers=headers).get_json()["items"]
    assert {n["usuario_id"] for n in only_ana} == {ana.id}
    both = client.get(f"/api/v1/notificaciones?todos=true&usuario_id={ana.id}", headers=headers)
    assert both.status_code == 422 and both.headers["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in both.get_json()["errors"]] == ["query.usuario_id"]
