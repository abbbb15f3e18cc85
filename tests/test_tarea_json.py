"""Tarea reads built by PostgreSQL equal, string for string, what the Python path (ORM rows through TareaOut) wrote."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from gad.errors import Forbidden, NotFound
from gad.extensions import db
from gad.models import Asignacion, Efectivo, Tarea, Usuario
from gad.schemas.common import Page
from gad.schemas.events import TaskCreated, TaskUpdated
from gad.schemas.tareas import TareaOut
from gad.services import tarea_json, tareas
from gad.services.tarea_events import record_summary, tarea_event
from gad.vocab import TIEMPO_MAX, TIEMPO_MIN, EstadoTarea, TipoTarea
from tests.builders import Builders

TEXTS = [
    None,
    "",
    "plain ascii",
    "ñandú — «comillas» 'simple' \"double\" back\\slash / slash",
    "emoji 🚓🚑 and astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, combining é, RTL עברית, CJK 警察",
    "controls \t tab \n newline \r cr \x01 \x1f \x7f, separators \u2028 \u2029, bom \ufeff",
    "x" * 4000,
]
FLOATS = [0.0, -0.0, 90.0, -90.0, 1e-300, 5e-324, 0.1, 1 / 3, 89.99999999999999, -45.123456789012345]
LONS = [0.0, -0.0, 180.0, -180.0, 1e-300, 5e-324, 0.1, 2 / 3, 179.99999999999997, -3.7]
INSTANTS = [
    None,
    TIEMPO_MIN,
    TIEMPO_MAX - timedelta(microseconds=1),
    datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC),
    datetime(2026, 11, 30, 1, 2, 3, 1, tzinfo=UTC),
    datetime(2026, 11, 30, 1, 2, 3, 120000, tzinfo=UTC),
    datetime(2026, 11, 30, 1, 2, 3, 999999, tzinfo=timezone(timedelta(hours=-14))),  # stored and read as UTC
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30))),
]


def _values(document: str | bytes) -> Any:
    """A JSON document as comparable values: numbers as (value, sign) so 0.0 and -0.0 stay apart (PostgreSQL
    writes -0.0 as ``-0``, which is the same number), strings (time values included) compared exactly."""

    def signed(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: signed(item) for key, item in value.items()}
        if isinstance(value, list):
            return [signed(item) for item in value]
        if isinstance(value, float):
            return (value, math.copysign(1.0, value))
        return value

    return signed(json.loads(document, parse_int=float))


def _python_one(actor: Usuario, tarea_id: int) -> str:
    return TareaOut.model_validate(tareas.read_tarea(actor, tarea_id)).model_dump_json()


def _python_page(actor: Usuario, filters: dict[str, Any], limit: int, offset: int) -> str:
    items, total = tareas.list_tareas(actor, filters, limit, offset)
    return Page[TareaOut].model_validate({"items": items, "total": total, "limit": limit, "offset": offset}).model_dump_json()


def _generate(build: Builders, rng: random.Random, creators: list[Usuario], delegados: list[Usuario], efectivos: list[Efectivo]) -> list[int]:
    """Tareas of every shape: each nullable field null and set, every estado and tipo, extremes, emergencies."""
    ids = []
    free = list(efectivos)
    for n in range(60):
        inicio = INSTANTS[n % len(INSTANTS)]
        fin = None if inicio is None or n % 3 == 0 else min(inicio + timedelta(hours=rng.choice([1, 1000])), TIEMPO_MAX - timedelta(microseconds=1))
        if fin is not None and fin <= inicio:
            fin = None
        inicio_real = INSTANTS[(n * 5) % len(INSTANTS)]
        fin_real = (
            None
            if inicio_real is None or n % 2
            else min(inicio_real + timedelta(microseconds=rng.choice([0, 1, 500000])), TIEMPO_MAX - timedelta(microseconds=1))
        )
        located = n % 4 != 0
        created = INSTANTS[(n * 3) % len(INSTANTS)] or datetime(2026, 1, 1, tzinfo=UTC)
        tarea = build.tarea(
            rng.choice(creators),
            codigo=f"EQ-{n:04d}" if n % 7 else f"EMG-{n:04d}",
            titulo=(TEXTS[n % len(TEXTS)] or "título")[:190].ljust(5, "·"),
            descripcion=TEXTS[(n + 1) % len(TEXTS)],
            tipo=list(TipoTarea)[n % len(TipoTarea)].value,
            prioridad=1 + n % 5,
            estado=list(EstadoTarea)[n % len(EstadoTarea)].value,
            es_emergencia=n % 7 == 0,
            inicio_programado=inicio,
            fin_programado=fin,
            inicio_real=inicio_real,
            fin_real=fin_real,
            tiempo_pausado_s=rng.choice([0, 1, 2**31 - 1]),
            ubicacion_lat=FLOATS[n % len(FLOATS)] if located else None,
            ubicacion_lon=LONS[(n * 3) % len(LONS)] if located else None,
            ubicacion_descripcion=(TEXTS[(n + 2) % len(TEXTS)] or None) and (TEXTS[(n + 2) % len(TEXTS)] or "")[:300],
            delegado_usuario_id=rng.choice(delegados).id if n % 3 else None,
            notas=TEXTS[(n + 3) % len(TEXTS)],
            version=rng.choice([1, 2, 2**31 - 1]),
            created_at=created,
            updated_at=created + timedelta(microseconds=n % 2),
        )
        ids.append(tarea.id)
        # Some with nobody, some with one or three efectivos (assigned at distinct instants, one released).
        for k in range([0, 1, 3][n % 3] if len(free) >= 3 else 0):
            efectivo = free.pop()
            with build.app.app_context():
                en = datetime(2026, 11, 30, 0, 0, k, k * 1000, tzinfo=UTC)
                db.session.add(Asignacion(tarea_id=tarea.id, efectivo_id=efectivo.id, asignado_en=en))
                if k == 2:
                    db.session.add(Asignacion(tarea_id=tarea.id, efectivo_id=efectivo.id, asignado_en=en, liberado_en=en + timedelta(seconds=1)))
                db.session.commit()
    return ids


def test_postgres_built_tareas_equal_the_python_path_on_every_shape(app: Flask, build: Builders) -> None:
    rng = random.Random(18)
    supervisor, admin = build.usuario(2), build.usuario(3)
    agentes = [build.usuario(1) for _ in range(4)]
    efectivos = [build.efectivo(usuario_id=agentes[i - 66].id if i >= 66 else None, nombre=TEXTS[3 + i % 3] or "x") for i in range(70)]
    # The last four (popped first) are the agentes' own: assignment makes some tareas readable to them.
    ids = _generate(build, rng, [supervisor, admin, *agentes], [supervisor, *agentes], efectivos)
    with app.app_context():
        deleted = db.session.get(Tarea, ids[-1])
        assert deleted is not None
        deleted.deleted_at = datetime.now(UTC)
        db.session.commit()
        actors = [db.session.get(Usuario, u.id) for u in [supervisor, admin, *agentes]]
        compared = forbidden = 0
        for actor in actors:
            assert actor is not None
            for tarea_id in [*ids, 10**9]:
                try:
                    expected = _python_one(actor, tarea_id)
                except (NotFound, Forbidden) as exc:
                    with pytest.raises(type(exc), match=str(exc.args[0]) if exc.args else None):
                        tarea_json.tarea_json(actor, tarea_id)
                    forbidden += isinstance(exc, Forbidden)
                    continue
                body, version = tarea_json.tarea_json(actor, tarea_id)
                built = TareaOut.model_validate_json(body)  # the contract holds...
                assert version == built.version
                # ...and the document is the Python one: same keys, same values, time values as the same strings.
                assert _values(body) == _values(expected), tarea_id
                compared += 1
        assert compared > 100 and forbidden > 20  # every kind of answer was exercised

        filter_sets: list[dict[str, Any]] = [
            {},
            {"estado": [EstadoTarea.PROGRAMADA, EstadoTarea.EN_CURSO]},
            {"tipo": [TipoTarea.PATRULLAJE], "prioridad_min": 2, "prioridad_max": 4},
            {"delegado_usuario_id": agentes[0].id},
            {"efectivo_id": efectivos[-1].id},
            {"desde": datetime(2000, 1, 1, tzinfo=UTC), "hasta": datetime(2100, 1, 1, tzinfo=UTC)},
            {"q": "ñandú"},
            {"q": "%_\\"},
        ]
        sorts = ["inicio_programado", "-inicio_programado", "prioridad", "-prioridad", "created_at", "-created_at"]
        for actor in actors:
            assert actor is not None
            for full_keys, filters in enumerate(filter_sets):
                for i, sort in enumerate(sorts):  # every sort, and each page shape in turn (past the end included)
                    for limit, offset in [[(50, 0), (7, 3), (200, 0), (5, 1000)][(i + full_keys) % 4]]:
                        full = {"estado": None, "tipo": None, "prioridad_min": None, "prioridad_max": None, "delegado_usuario_id": None}
                        full |= {"efectivo_id": None, "desde": None, "hasta": None, "q": None, "sort": sort} | filters
                        body = tarea_json.page_json(actor, full, limit, offset)
                        expected = _python_page(actor, full, limit, offset)
                        Page[TareaOut].model_validate_json(body)
                        assert _values(body) == _values(expected), (actor.id, filters, sort, limit, offset)


def test_get_and_list_answer_the_built_json_with_the_etag(client: FlaskClient, build: Builders) -> None:
    sup = build.usuario(2)
    tarea = build.tarea(sup, version=4)
    one = client.get(f"/api/v1/tasks/{tarea.id}", headers=build.headers(sup))
    assert one.status_code == 200 and one.mimetype == "application/json" and one.headers["ETag"] == '"4"'
    assert TareaOut.model_validate_json(one.data).codigo == tarea.codigo
    page = client.get("/api/v1/tasks?limit=1&offset=5", headers=build.headers(sup))
    assert page.status_code == 200 and page.get_json() == {"items": [], "total": 1, "limit": 1, "offset": 5}


def test_a_created_tarea_answers_what_the_python_path_reads_back_on_every_shape(app: Flask, client: FlaskClient, build: Builders) -> None:
    """POST /tasks answers the document its INSERT built: equal, value for value, to the tarea read back through the
    ORM and TareaOut, for bodies of every shape; and its task_created event carries the row as the ORM reads it."""
    supervisor = build.usuario(2)
    delegado = build.usuario(1)
    instants = [i for i in INSTANTS if i is None or TIEMPO_MIN < i < TIEMPO_MAX - timedelta(hours=2)]
    accepted = 0
    for n in range(40):
        inicio = instants[n % len(instants)]
        located = n % 4 != 0
        texto = TEXTS[n % len(TEXTS)]
        body = {
            "codigo": f"NEW-{n:04d}",
            "titulo": ((texto or "título")[:190]).strip().ljust(5, "·"),
            "descripcion": texto,
            "tipo": list(TipoTarea)[n % len(TipoTarea)].value,
            "prioridad": 1 + n % 5,
            "inicio_programado": inicio.isoformat() if inicio else None,
            "fin_programado": (inicio + timedelta(hours=1, microseconds=n)).isoformat() if inicio and n % 2 else None,
            "ubicacion_lat": FLOATS[n % len(FLOATS)] if located else None,
            "ubicacion_lng": LONS[(n * 3) % len(LONS)] if located else None,
            "ubicacion_descripcion": texto[:300] if texto and n % 3 else None,
            "delegado_usuario_id": delegado.id if n % 3 else None,
            "notas": TEXTS[(n + 3) % len(TEXTS)],
        }
        if n % 5 == 0:  # optional fields left out altogether: the defaults are the row's
            body = {k: v for k, v in body.items() if v is not None and k != "prioridad"}
        created = client.post("/api/v1/tasks", json=body, headers=build.headers(supervisor))
        if created.status_code == 422:  # a control character the text rules refuse: refused before any SQL
            assert "titulo" in created.text or "descripcion" in created.text or "notas" in created.text or "ubicacion" in created.text
            continue
        assert created.status_code == 201, created.text
        accepted += 1
        built = TareaOut.model_validate_json(created.data)
        assert created.headers["ETag"] == f'"{built.version}"' and created.headers["Location"].endswith(f"/api/v1/tasks/{built.id}")
        with app.app_context():
            actor = db.session.get(Usuario, supervisor.id)
            assert actor is not None
            assert _values(created.data) == _values(_python_one(actor, built.id)), body
            tarea = db.session.get(Tarea, built.id)
            stored = db.session.execute(
                text("SELECT payload FROM eventos WHERE entity_type = 'tarea' AND entity_id = :id AND event_type = 'task_created'"), {"id": built.id}
            ).scalar_one()
            assert tarea is not None
            assert stored == json.loads(json.dumps(tarea_event(TaskCreated, tarea, assigned=set()).to_json(), default=str)), body
    assert accepted >= 30


def test_an_event_with_more_than_the_summary_is_not_recorded_from_the_summary_alone() -> None:
    # record_summary writes the payload a creation's statement returned without the model: an event kind with
    # fields of its own (a change's before and after) would be stored without them.
    with pytest.raises(TypeError, match="record_payload"):
        record_summary(TaskUpdated, {"id": 1, "es_emergencia": False}, None)
