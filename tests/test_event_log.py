"""The event log: every committed change writes exactly one event, with actor and request id."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.builders import Builders
from tests.helpers import TAREA, all_events


def test_every_committed_change_writes_one_event_with_actor_and_request_id(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo()
    headers = build.headers(sup, **{"X-Request-ID": "req-abc-123"})
    tarea_id = client.post("/api/v1/tasks", json=TAREA, headers=headers).get_json()["id"]
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
    assert all(e.actor_id == sup.id and e.request_id == "req-abc-123" for e in events)
    assert events[1].payload["before"] == {"prioridad": 3} and events[1].payload["after"] == {"prioridad": 5}
