"""The event log: every committed change writes exactly one event, with actor and request id."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from tests.builders import Builders
from tests.helpers import TAREA, all_events


def test_every_committed_change_writes_one_event_with_actor_and_request_id(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    # A client's X-Request-ID is only a label for its own logs: another client could send the same one, so the
    # audit trail keeps the id GAD gave the request (the one its answer carries).
    headers = build.headers(sup, **{"X-Request-ID": "req-abc-123"})
    created = client.post("/api/v1/tasks", json=TAREA, headers=headers)
    tarea_id = created.get_json()["id"]
    client.patch(f"/api/v1/tasks/{tarea_id}", json={"prioridad": 5}, headers=headers)
    client.post(f"/api/v1/tasks/{tarea_id}/efectivos", json={"efectivo_ids": [efectivo.id]}, headers=headers)
    client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": "en_curso"}, headers=headers)
    client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": "finalizada"}, headers=headers)  # allowed
    client.post(f"/api/v1/tasks/{tarea_id}/estado", json={"estado": "en_curso"}, headers=headers)  # 409: no event
    events = all_events(app)
    assert [e.event_type for e in events] == [
        "task_created",
        "task_updated",
        "task_assigned",
        "efectivo_status_changed",
        "task_status_changed",
        "efectivo_status_changed",
        "task_status_changed",
    ]
    assert [e.id for e in events] == list(range(events[0].id, events[0].id + len(events)))
    assert all(e.actor_id == sup.id for e in events)
    assert events[0].request_id == created.headers["X-Request-ID"] != "req-abc-123"
    assert len({e.request_id for e in events}) == 5 and all(re.fullmatch(r"[0-9a-f]{32}", e.request_id or "") for e in events)
    assert events[1].payload["before"] == {"prioridad": 3} and events[1].payload["after"] == {"prioridad": 5}


def test_every_domain_event_matches_its_typed_payload_and_is_documented(app: Flask, build: Builders) -> None:
    # Service level: HTTP adds nothing to what is written. Every kind of domain event once, then each stored
    # payload must parse as its model and serialise back to exactly what was stored.
    from gad.extensions import db
    from gad.models import Usuario, utcnow
    from gad.openapi import document
    from gad.schemas.events import EVENT_PAYLOADS
    from gad.services import alertas, asignaciones, efectivos, notificaciones, tareas, transitions, usuarios
    from gad.services import turnos as agenda
    from gad.vocab import CausaNotificacion, Disponibilidad, EstadoTarea, RespuestaNotificacion, TipoTarea

    admin_id = build.usuario(3).id
    with app.app_context():
        admin = db.session.get(Usuario, admin_id)
        assert admin is not None
        efectivo = efectivos.create_efectivo(admin, {"codigo_interno": "EV-001", "nombre": "Agente Eventos"})
        efectivos.update_efectivo(admin, efectivo.id, {"unidad": "Móvil 7"}, None)
        efectivos.set_disponibilidad(admin, efectivo.id, Disponibilidad.NO_DISPONIBLE, "médico", None)
        efectivos.set_disponibilidad(admin, efectivo.id, Disponibilidad.DISPONIBLE, None, None)
        efectivos.set_ubicacion(admin, efectivo.id, 40.4, -3.7)
        # The agenda (issue 17): a turno created, moved and removed; a licencia granted and withdrawn.
        start = datetime(2027, 1, 4, 8, tzinfo=UTC)
        creados = agenda.create_turnos(admin, {"efectivo_id": efectivo.id, "inicio": start, "fin": start + timedelta(hours=8)})
        agenda.update_turno(admin, creados[0].id, {"tipo": "guardia"}, None)
        agenda.delete_turno(admin, creados[0].id, None)
        licencia = agenda.create_licencia(admin, {"efectivo_id": efectivo.id, "tipo": "vacaciones", "inicio": start, "fin": start + timedelta(days=2)})
        agenda.delete_licencia(admin, licencia.id, None)
        tarea = tareas.create_tarea(admin, {"codigo": "EV-T1", "titulo": "Tarea de eventos", "tipo": TipoTarea.PATRULLAJE, "prioridad": 2})
        tarea_id = tarea.id
        tareas.update_tarea(admin, tarea_id, {"descripcion": "cambiada"}, None)
        asignaciones.assign(admin, tarea_id, [efectivo.id], None)
        transitions.transition(admin, tarea_id, EstadoTarea.EN_CURSO, None, None)
        asignaciones.unassign(admin, tarea_id, efectivo.id, None)
        tareas.delete_tarea(admin, tarea_id, None)
        efectivos.deactivate_efectivo(admin, efectivo.id, None)
        otro = usuarios.create_usuario(
            admin, {"email": "eventos@gad.test", "password": "a-long-password-1", "dni": "EV12345", "nombre": "Eve", "apellido": "Ntos"}
        )
        usuarios.update_usuario(admin, otro.id, {"nombre": "Eva"}, None)
        # Notifications: an alert answered by its recipient, delivery, reading, closing, one closed unanswered, and an escalation.
        recipient = db.session.get(Usuario, otro.id)
        assert recipient is not None
        aviso = alertas.create_alerta(admin, {"tipo": "aviso", "texto": "Aviso de eventos", "destino": "usuarios", "usuario_ids": [otro.id]})
        [recibida], _, _ = notificaciones.list_notificaciones(recipient, {}, 10, 0)
        notificaciones.mark_delivered(otro.id, [recibida.id])
        notificaciones.ack(recipient, recibida.id, RespuestaNotificacion.LEIDA, None)
        notificaciones.ack(recipient, recibida.id, RespuestaNotificacion.ACEPTO, None)
        alertas.close(admin, aviso.id)
        ignorado = alertas.create_alerta(admin, {"tipo": "aviso", "texto": "Aviso sin respuesta", "destino": "usuarios", "usuario_ids": [otro.id]})
        alertas.close(admin, ignorado.id)  # its question withdrawn from the recipient
        notificaciones.notify(
            [otro.id], causa=CausaNotificacion.ASIGNACION, titulo="Pendiente", texto="t", prioridad=3, actor_id=admin.id, requiere_respuesta=True
        )
        assert notificaciones.escalate_due(now=utcnow() + timedelta(seconds=301)) == 1
        db.session.commit()
        documented = document(app)["x-websocket-events"]
    stored = [e for e in all_events(app) if e.topic != "seguridad"]
    # emergency_created is raised by dispatch and the import_* events by the GRUPO_GAD importer, each tested there.
    assert {e.event_type for e in stored} == set(EVENT_PAYLOADS) - {"emergency_created", "import_started", "import_batch", "import_finished"}
    for event in stored:
        model = EVENT_PAYLOADS[event.event_type]
        assert model.model_validate(event.payload).to_json() == event.payload, event.event_type
        assert event.event_type in documented
    # The one availability shape, whichever path changed it (by hand or by the tarea starting).
    status_changes = [e.payload for e in stored if e.event_type == "efectivo_status_changed"]
    assert len(status_changes) == 4 and len({frozenset(p) for p in status_changes}) == 1
