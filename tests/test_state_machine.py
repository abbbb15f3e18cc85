"""The tarea state machine: timings, history, pauses, and the efectivos' availability on each transition."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from gad.errors import InvalidTransition
from gad.extensions import db
from gad.models import HistorialEstado, Usuario
from gad.services import transitions
from gad.vocab import TRANSICIONES, EstadoTarea
from tests.builders import Builders
from tests.helpers import transition


def test_full_lifecycle_sets_times_history_and_efectivo_availability(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    e1, e2 = build.efectivo(), build.efectivo()
    tarea = build.tarea(sup)
    headers = build.headers(sup)
    assigned = client.post(f"/api/v1/tasks/{tarea.id}/efectivos", json={"efectivo_ids": [e1.id, e2.id]}, headers=headers)
    assert assigned.status_code == 200 and {e["efectivo_id"] for e in assigned.get_json()["efectivos"]} == {e1.id, e2.id}
    assert client.get(f"/api/v1/efectivos/{e1.id}", headers=headers).get_json()["estado_disponibilidad"] == "disponible"

    started = transition(client, headers, tarea.id, "en_curso").get_json()
    assert started["inicio_real"] is not None and started["cerrada_en"] is None
    assert client.get(f"/api/v1/efectivos/{e1.id}", headers=headers).get_json()["estado_disponibilidad"] == "en_tarea"
    assert transition(client, headers, tarea.id, "pausada", motivo="Relevo").get_json()["estado"] == "pausada"
    assert transition(client, headers, tarea.id, "en_curso").status_code == 200
    finished = transition(client, headers, tarea.id, "finalizada").get_json()
    assert finished["fin_real"] is not None and finished["efectivos"] == []
    assert finished["cerrada_en"] == finished["fin_real"]
    for efectivo in (e1, e2):
        assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=headers).get_json()["estado_disponibilidad"] == "disponible"

    history = client.get(f"/api/v1/tasks/{tarea.id}/historial", headers=headers).get_json()
    # The builder inserts the tarea directly, so the history starts at the first transition.
    assert [(h["estado_anterior"], h["estado_nuevo"]) for h in history] == [
        ("programada", "en_curso"),
        ("en_curso", "pausada"),
        ("pausada", "en_curso"),
        ("en_curso", "finalizada"),
    ]
    assert history[0]["motivo"] == "Tarea iniciada" and history[1]["motivo"] == "Relevo" and history[3]["motivo"] == "Tarea completada"
    assert history[2]["motivo"] == "Tarea reanudada"  # not "iniciada": the work did not begin again
    assert all(h["usuario_id"] == sup.id for h in history)


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [
        ("programada", "finalizada", ["cancelada", "en_curso"]),
        ("programada", "pausada", ["cancelada", "en_curso"]),
        ("finalizada", "en_curso", []),
        ("cancelada", "programada", []),
        ("en_curso", "programada", ["cancelada", "finalizada", "pausada"]),
        ("pausada", "finalizada", ["cancelada", "en_curso"]),
    ],
)
def test_illegal_transitions_are_409_listing_allowed_states(
    app: Flask, client: FlaskClient, build: Builders, start: str, target: str, allowed: list[str]
) -> None:
    sup = build.usuario(2)
    now = datetime.now(UTC)
    tarea = build.tarea(sup, estado=start, inicio_real=now if start != "programada" else None, fin_real=now if start in ("finalizada",) else None)
    response = transition(client, build.headers(sup), tarea.id, target)
    assert response.status_code == 409
    body = response.get_json()
    assert body["allowed"] == allowed and body["estado_actual"] == start
    with app.app_context():
        assert db.session.query(HistorialEstado).count() == 0


def test_pause_time_accumulates(app: Flask, client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    paused_at = datetime.now(UTC) - timedelta(minutes=10)
    tarea = build.tarea(sup, estado="pausada", inicio_real=paused_at - timedelta(minutes=5), pausado_en=paused_at, tiempo_pausado_s=60)
    resumed = transition(client, build.headers(sup), tarea.id, "en_curso").get_json()
    assert 659 <= resumed["tiempo_pausado_s"] <= 665


def test_closed_lists_read_latest_closed_first_whatever_their_age(client: FlaskClient, build: Builders) -> None:
    """The board's closed columns ask for ``sort=-cerrada_en``: a patrol created long ago and cancelled now comes
    before ones created later and closed earlier, and a tarea cancelled before it started has a cerrada_en though
    no fin_real."""
    sup = build.usuario(2)
    headers = build.headers(sup)
    long_ago = datetime.now(UTC) - timedelta(days=30)
    old = build.tarea(sup, created_at=long_ago)
    newer = [build.tarea(sup, estado="cancelada", cerrada_en=long_ago + timedelta(days=n)) for n in (1, 2)]
    cancelled = transition(client, headers, old.id, "cancelada").get_json()
    assert cancelled["fin_real"] is None and cancelled["cerrada_en"] is not None

    def ids(query: str) -> list[int]:
        answer = client.get(f"/api/v1/tasks?estado=cancelada&{query}", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        return [item["id"] for item in answer.get_json()["items"]]

    assert ids("sort=-cerrada_en") == [old.id, newer[1].id, newer[0].id]
    assert ids("sort=cerrada_en") == [newer[0].id, newer[1].id, old.id]
    assert ids("sort=-created_at") == [newer[1].id, newer[0].id, old.id]  # what the board read before


def test_a_change_sent_late_takes_the_time_it_was_made_within_the_tareas_order(client: FlaskClient, build: Builders) -> None:
    """A patrol started and finished on a phone without coverage reached the server in two requests 0.06 s apart, and
    that was its duration in every report. ``ocurrido_en`` dates a change, within bounds the phone's clock cannot
    move: never in the future, never before the tarea's previous change or first assignment, nor a day back."""
    sup = build.usuario(2)
    headers = build.headers(sup)
    now = datetime.now(UTC)
    tarea = build.tarea(sup, created_at=now - timedelta(hours=2))
    started = client.post(
        f"/api/v1/tasks/{tarea.id}/estado", json={"estado": "en_curso", "ocurrido_en": (now - timedelta(minutes=50)).isoformat()}, headers=headers
    )
    assert started.status_code == 200, started.get_json()
    paused = transition(client, headers, tarea.id, "pausada").get_json()  # online: now
    back = {"estado": "en_curso", "ocurrido_en": (now - timedelta(hours=1)).isoformat()}  # before the pause: the pause's moment
    resumed = client.post(f"/api/v1/tasks/{tarea.id}/estado", json=back, headers=headers).get_json()
    finished = client.post(
        f"/api/v1/tasks/{tarea.id}/estado",
        json={"estado": "finalizada", "ocurrido_en": (datetime.now(UTC) + timedelta(seconds=20)).isoformat()},
        headers=headers,
    ).get_json()
    moment = datetime.fromisoformat
    assert moment(started.get_json()["inicio_real"]) == now - timedelta(minutes=50)
    assert paused["estado"] == "pausada" and resumed["tiempo_pausado_s"] == 0  # resumed "before" the pause: at its moment
    assert moment(finished["fin_real"]) <= datetime.now(UTC) and moment(finished["fin_real"]) == moment(finished["cerrada_en"])
    history = client.get(f"/api/v1/tasks/{tarea.id}/historial", headers=headers).get_json()
    assert [h["estado_nuevo"] for h in history] == ["en_curso", "pausada", "en_curso", "finalizada"]
    times = [moment(h["created_at"]) for h in history]
    assert times[0] == now - timedelta(minutes=50) and times == sorted(times)
    # A phone's clock running fast does not block a change (it is now); one set back does not date it before the
    # tarea's first assignment, nor more than a day ago.
    fast = build.tarea(sup)
    ahead = client.post(
        f"/api/v1/tasks/{fast.id}/estado", json={"estado": "en_curso", "ocurrido_en": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}, headers=headers
    )
    assert ahead.status_code == 200 and moment(ahead.get_json()["inicio_real"]) <= datetime.now(UTC)
    assigned_at = now - timedelta(minutes=30)
    assigned = build.tarea(sup, created_at=now - timedelta(hours=3), primera_asignacion_en=assigned_at)
    slow = client.post(
        f"/api/v1/tasks/{assigned.id}/estado", json={"estado": "en_curso", "ocurrido_en": (now - timedelta(hours=2)).isoformat()}, headers=headers
    )
    assert moment(slow.get_json()["inicio_real"]) == assigned_at
    old = build.tarea(sup, created_at=now - timedelta(days=5))
    last_week = client.post(
        f"/api/v1/tasks/{old.id}/estado", json={"estado": "en_curso", "ocurrido_en": (now - timedelta(days=4)).isoformat()}, headers=headers
    )
    assert moment(last_week.get_json()["inicio_real"]) >= now - timedelta(hours=24)


def test_the_boards_closed_read_walks_its_index_instead_of_sorting_every_closed_tarea(app_with: Callable[..., Flask], build: Builders) -> None:
    """History only grows (a year: hundreds of thousands of closed tareas). The first index for the closed columns led by
    estado, which PostgreSQL cannot use for ``estado = ANY(...)`` in this order: every board load sorted them all. The
    statement the list sends is planned with sorting priced out: its order must come from ix_tareas_cerradas."""
    app = app_with(DB_PREPARED_STATEMENTS=False)  # the statement as text, its values in it
    sup = build.usuario(2)
    for n in range(3):
        build.tarea(sup, estado=["finalizada", "cancelada", "programada"][n])
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append(cursor.mogrify(statement, parameters).decode())

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        answer = app.test_client().get("/api/v1/tasks?estado=finalizada&sort=-cerrada_en&limit=20", headers=build.headers(sup))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert answer.status_code == 200 and answer.get_json()["total"] == 1
    [page] = [statement for statement in sent if "cerrada_en" in statement and "ORDER BY" in statement]
    with app.app_context(), db.engine.connect() as connection:
        connection.exec_driver_sql("SET enable_sort = off")
        connection.exec_driver_sql("SET enable_seqscan = off")
        plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {page}").scalar()

    def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    every = list(nodes(plan[0]["Plan"]))
    assert any(n.get("Index Name") == "ix_tareas_cerradas" for n in every), plan
    # The page's own order (what a page of 20 out of every closed tarea would have to sort) comes from the index; the
    # sorts left order the 20 rows taken and each one's assignments.
    assert not [n for n in every if n["Node Type"] == "Sort" and any("cerrada_en" in key for key in n["Sort Key"])], plan


def test_cancel_releases_efectivos(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    efectivo = build.efectivo(estado_disponibilidad="en_tarea")
    tarea = build.tarea(sup, estado="en_curso", inicio_real=datetime.now(UTC))
    build.asignacion(tarea, efectivo)
    assert transition(client, build.headers(sup), tarea.id, "cancelada").status_code == 200
    assert client.get(f"/api/v1/efectivos/{efectivo.id}", headers=build.headers(sup)).get_json()["estado_disponibilidad"] == "disponible"


def test_efectivo_user_moves_own_tarea_but_cannot_cancel_it(client: FlaskClient, build: Builders) -> None:
    sup, user = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=user.id)
    tarea = build.tarea(sup)
    build.asignacion(tarea, efectivo)
    headers = build.headers(user)
    assert transition(client, headers, tarea.id, "en_curso").status_code == 200
    assert transition(client, headers, tarea.id, "cancelada").status_code == 403
    assert transition(client, headers, tarea.id, "finalizada").status_code == 200


@pytest.mark.parametrize("current", list(EstadoTarea))
@pytest.mark.parametrize("to", list(EstadoTarea))
def test_transition_is_allowed_exactly_as_the_table_says(app: Flask, build: Builders, current: EstadoTarea, to: EstadoTarea) -> None:
    # Service level: every pair of states, against gad.vocab.TRANSICIONES (HTTP adds nothing to the rule).
    admin = build.usuario(3)
    tarea = build.tarea(admin, estado=current.value)
    with app.app_context():
        actor = db.session.get(Usuario, admin.id)
        assert actor is not None
        if to in TRANSICIONES[current]:
            assert transitions.transition(actor, tarea.id, to, None, None)["estado"] == to.value
        else:
            with pytest.raises(InvalidTransition) as refused:
                transitions.transition(actor, tarea.id, to, None, None)
            assert refused.value.extra["allowed"] == sorted(state.value for state in TRANSICIONES[current])
        db.session.rollback()


@pytest.mark.parametrize("ended", ["cancelada", "finalizada"])
def test_an_officer_acting_on_their_tarea_after_it_ended_is_told_it_ended(client: FlaskClient, build: Builders, ended: str) -> None:
    """The supervisor cancelled the tarea while the officer's "Iniciar" waited offline: the phone said "only tareas
    assigned to you", true (ending released them) but not why. They still read the tarea; what stops them is its estado."""
    sup, user = build.usuario(2), build.usuario(1)
    tarea = build.tarea(sup, estado="en_curso", inicio_real=datetime.now(UTC))
    build.asignacion(tarea, build.efectivo(usuario_id=user.id))
    assert transition(client, build.headers(sup), tarea.id, ended).status_code == 200
    response = transition(client, build.headers(user), tarea.id, "pausada")
    assert response.status_code == 409
    problem = response.get_json()
    assert problem["estado_actual"] == ended and problem["allowed"] == []
    assert problem["mensaje"] == f"Una tarea {ended} no puede pasar a pausada."
    # Someone never assigned to it learns nothing about it.
    stranger = build.usuario(1)
    build.efectivo(usuario_id=stranger.id)
    refused = transition(client, build.headers(stranger), tarea.id, "pausada")
    assert refused.status_code == 403 and "estado_actual" not in refused.get_json()
