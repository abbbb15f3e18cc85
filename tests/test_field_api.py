"""The API pieces the browser pages need: fix times for positions kept offline, the latest visible events, Spanish field errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient

from tests.builders import Builders

SOL = (40.4169, -3.7035)


def _put_position(client: FlaskClient, build: Builders, who, efectivo_id: int, **body: object):  # type: ignore[no-untyped-def]
    payload = {"lat": SOL[0], "lng": SOL[1], **body}
    return client.put(f"/api/v1/efectivos/{efectivo_id}/ubicacion", json=payload, headers=build.headers(who))


def test_position_fix_time_is_recorded_and_cercanos_ages_it(client: FlaskClient, build: Builders) -> None:
    officer, sup = build.usuario(1), build.usuario(2)
    efectivo = build.efectivo(usuario_id=officer.id)
    taken = datetime.now(UTC) - timedelta(minutes=20)
    response = _put_position(client, build, officer, efectivo.id, registrado_en=taken.isoformat())
    assert response.status_code == 200
    assert datetime.fromisoformat(response.get_json()["posicion_en"]) == taken
    # 20 minutes old is beyond POSICION_MAX_EDAD_S (15 min): dispatch must not treat it as fresh.
    near = client.get(f"/api/v1/efectivos/cercanos?lat={SOL[0]}&lng={SOL[1]}", headers=build.headers(sup)).get_json()
    assert [c["efectivo"]["id"] for c in near] == []
    old = client.get(f"/api/v1/efectivos/cercanos?lat={SOL[0]}&lng={SOL[1]}&incluir_antiguas=true", headers=build.headers(sup)).get_json()
    assert old[0]["posicion_edad_s"] >= 20 * 60


def test_position_fix_time_in_the_future_is_refused_in_spanish(client: FlaskClient, build: Builders) -> None:
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    response = _put_position(client, build, officer, efectivo.id, registrado_en=(datetime.now(UTC) + timedelta(minutes=5)).isoformat())
    assert response.status_code == 422
    error = response.get_json()["errors"][0]
    assert error["field"] == "body.registrado_en"
    assert "futura" in error["mensaje"]


def test_an_older_fix_arriving_late_does_not_move_the_efectivo_back(client: FlaskClient, build: Builders) -> None:
    officer = build.usuario(1)
    efectivo = build.efectivo(usuario_id=officer.id)
    now = datetime.now(UTC)
    assert _put_position(client, build, officer, efectivo.id, lat=40.5, registrado_en=now.isoformat()).status_code == 200
    late = _put_position(client, build, officer, efectivo.id, lat=40.1, registrado_en=(now - timedelta(minutes=2)).isoformat())
    assert late.status_code == 200
    assert late.get_json()["lat"] == 40.5


def test_recent_events_are_what_the_usuario_would_have_received_live(client: FlaskClient, build: Builders) -> None:
    sup, officer = build.usuario(2), build.usuario(1)
    mine = client.post(
        "/api/v1/tasks",
        json={"codigo": "VIS-1", "titulo": "Visible para el efectivo", "tipo": "vigilancia", "delegado_usuario_id": officer.id},
        headers=build.headers(sup),
    )
    other = client.post("/api/v1/tasks", json={"codigo": "VIS-2", "titulo": "Ajena al efectivo", "tipo": "vigilancia"}, headers=build.headers(sup))
    assert mine.status_code == other.status_code == 201
    for_sup = client.get("/api/v1/eventos/recientes?limit=10", headers=build.headers(sup)).get_json()
    assert [f["data"]["codigo"] for f in for_sup if f["event_type"] == "task_created"] == ["VIS-2", "VIS-1"]
    assert {"id", "event_type", "topic", "data", "timestamp"} <= set(for_sup[0])
    for_officer = client.get("/api/v1/eventos/recientes", headers=build.headers(officer)).get_json()
    assert [f["data"]["codigo"] for f in for_officer] == ["VIS-1"]


def test_recent_events_follow_todays_read_rule_as_a_replay_does(client: FlaskClient, build: Builders) -> None:
    """An officer taken off a tarea (another delegado) or whose tarea is deleted no longer gets its history from
    the board's recent events, as REST then answers 403/404 and a websocket replay hands none of it over."""
    sup, officer, other, admin = build.usuario(2), build.usuario(1), build.usuario(1), build.usuario(3)
    headers = build.headers(sup)
    kept = client.post(
        "/api/v1/tasks", json={"codigo": "REC-KEPT", "titulo": "Sigue siendo suya", "tipo": "vigilancia", "delegado_usuario_id": officer.id}, headers=headers
    )
    moved = client.post(
        "/api/v1/tasks", json={"codigo": "REC-MOVED", "titulo": "Pasa a otro", "tipo": "vigilancia", "delegado_usuario_id": officer.id}, headers=headers
    )
    gone = client.post(
        "/api/v1/tasks", json={"codigo": "REC-GONE", "titulo": "Se borra luego", "tipo": "vigilancia", "delegado_usuario_id": officer.id}, headers=headers
    )
    assert kept.status_code == moved.status_code == gone.status_code == 201

    def codigos_seen() -> set[str]:
        frames = client.get("/api/v1/eventos/recientes?limit=50", headers=build.headers(officer)).get_json()
        return {frame["data"]["codigo"] for frame in frames if "codigo" in frame["data"]}

    assert codigos_seen() == {"REC-KEPT", "REC-MOVED", "REC-GONE"}
    moved_id, gone_id = moved.get_json()["id"], gone.get_json()["id"]
    assert client.patch(f"/api/v1/tasks/{moved_id}", json={"delegado_usuario_id": other.id}, headers=headers).status_code == 200
    assert client.delete(f"/api/v1/tasks/{gone_id}", headers=build.headers(admin)).status_code == 204
    assert client.get(f"/api/v1/tasks/{moved_id}", headers=build.headers(officer)).status_code == 403
    assert client.get(f"/api/v1/tasks/{gone_id}", headers=build.headers(officer)).status_code == 404
    assert codigos_seen() == {"REC-KEPT"}
    # A supervisor reads all three tareas' histories still (the deleted one's included, as the replay hands it over).
    frames = client.get("/api/v1/eventos/recientes?limit=50", headers=headers).get_json()
    assert {"REC-KEPT", "REC-MOVED", "REC-GONE"} <= {frame["data"].get("codigo") for frame in frames}


def test_validation_errors_carry_a_spanish_message(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    response = client.post("/api/v1/tasks", json={"codigo": "minusculas", "titulo": "abc", "tipo": "patrullaje"}, headers=build.headers(sup))
    assert response.status_code == 422
    by_field = {e["field"]: e["mensaje"] for e in response.get_json()["errors"]}
    assert by_field["body.codigo"].startswith("Solo MAYÚSCULAS")
    assert by_field["body.titulo"] == "Demasiado corto: al menos 5 caracteres."


def test_an_unassigned_emergency_says_why_nobody_was_found(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    build.efectivo(lat=SOL[0], lon=SOL[1], posicion_en=datetime.now(UTC) - timedelta(hours=1))
    body = {"lat": SOL[0], "lng": SOL[1]}
    response = client.post("/api/v1/tasks/emergency", json=body, headers=build.headers(sup))
    assert response.status_code == 201
    assert response.get_json()["sin_asignar"] is True
    assert response.get_json()["motivo_sin_asignar"] == "ninguna posición en los últimos 15 min de los efectivos disponibles cercanos"
    far = client.post("/api/v1/tasks/emergency", json={"lat": -33.9, "lng": 151.2}, headers=build.headers(sup)).get_json()
    assert far["motivo_sin_asignar"].startswith("ningún efectivo disponible con posición a menos de")


def test_an_officers_sos_sends_someone_else(client: FlaskClient, build: Builders) -> None:
    officer = build.usuario(1)
    me = build.efectivo(usuario_id=officer.id, lat=SOL[0], lon=SOL[1], posicion_en=datetime.now(UTC))
    partner = build.efectivo(lat=SOL[0] + 0.002, lon=SOL[1], posicion_en=datetime.now(UTC))
    response = client.post("/api/v1/tasks/emergency", json={"lat": SOL[0], "lng": SOL[1]}, headers=build.headers(officer))
    assert response.status_code == 201
    assert [a["efectivo_id"] for a in response.get_json()["asignados"]] == [partner.id]
    assert me.id != partner.id
