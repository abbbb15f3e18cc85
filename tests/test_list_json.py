"""Efectivos, usuarios, eventos and historial built by PostgreSQL equal what the Python path (ORM rows through the Out models) wrote."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import TypeAdapter
from sqlalchemy import func, select

from gad import policy
from gad.errors import Forbidden, NotFound
from gad.extensions import db
from gad.models import Evento, HistorialEstado, Tarea, Usuario
from gad.schemas.common import Page
from gad.schemas.efectivos import EfectivoOut
from gad.schemas.eventos import EventoOut, EventoPage
from gad.schemas.tareas import HistorialOut
from gad.schemas.usuarios import UsuarioOut
from gad.services import audit, efectivos, tarea_json, tareas, usuarios
from gad.vocab import TIEMPO_MAX, TIEMPO_MIN, Disponibilidad, EstadoTarea
from tests.builders import Builders
from tests.test_tarea_json import FLOATS, INSTANTS, LONS, TEXTS, _values

# Columns without a CHECK on the time window also hold what Python's datetime barely can.
EXTREME_INSTANTS = [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
PAYLOADS: list[dict[str, Any]] = [
    {},
    {"id": 1, "nested": {"a": [1, 2.5, None, True, False, "x"], "b": {}}},
    {"text": TEXTS[4], "controls": TEXTS[5], "quote": TEXTS[3]},
    {"big": 2**63 - 1, "bigger": 2**70, "neg": -(2**63), "tiny": 5e-324, "huge": 1.7976931348623157e308, "zero": -0.0, "third": 1 / 3},
    {"when": "2026-11-30T01:02:03.000001+00:00", "list": [[[]]], "empty": ""},
]
PAGE_SHAPES = [(50, 0), (7, 3), (200, 0), (5, 1000), (1, 0)]


def _text(n: int, fallback: str, length: int) -> str:
    return (TEXTS[n % len(TEXTS)] or fallback)[:length]


def _efectivos(build: Builders, rng: random.Random, agentes: list[Usuario]) -> None:
    """Efectivos of every shape: each nullable field null and set, every disponibilidad, on and off duty, extremes."""
    instants = [i for i in [*INSTANTS, *EXTREME_INSTANTS] if i is not None]
    for n in range(48):
        located = n % 3 != 0
        efectivo = build.efectivo(
            codigo_interno=f"EQ{n:03d}" + ("ñ" if n % 5 == 0 else ""),
            nombre=_text(n, "nombre", 200).ljust(2, "·"),
            usuario_id=agentes[n].id if n < len(agentes) else None,
            rango=None if n % 4 == 0 else _text(n + 1, "cabo", 50),
            unidad=None if n % 6 == 0 else ["Móvil 101", "Unidad 🚓", "u"][n % 3],
            especialidad=None if n % 5 == 1 else _text(n + 2, "patrulla", 100),
            estado_disponibilidad=list(Disponibilidad)[n % len(Disponibilidad)].value,
            estado_cambiado_en=instants[n % len(instants)],
            lat=FLOATS[n % len(FLOATS)] if located else None,
            lon=LONS[(n * 7) % len(LONS)] if located else None,
            posicion_en=instants[(n * 3) % len(instants)] if located and n % 2 else None,
            activo=n % 7 != 3,
            version=rng.choice([1, 2, 2**31 - 1]),
            created_at=instants[(n * 5) % len(instants)],
            updated_at=instants[(n * 11) % len(instants)],
        )
        if n % 4 == 1:  # on duty now; others off duty with a turno that ended or on licencia now
            build.turno(efectivo, datetime.now(UTC) - timedelta(hours=1))
        elif n % 4 == 2:
            build.turno(efectivo, datetime.now(UTC) - timedelta(days=2))
        elif n % 8 == 3:
            build.licencia(efectivo, datetime.now(UTC) - timedelta(hours=2))


def _python_efectivos(actor: Usuario, filters: dict[str, Any], limit: int, offset: int) -> str:
    items, total = efectivos.list_efectivos(actor, **filters, limit=limit, offset=offset)
    return Page[EfectivoOut](items=[EfectivoOut.model_validate(e) for e in items], total=total, limit=limit, offset=offset).model_dump_json()


def test_postgres_built_efectivos_equal_the_python_path_on_every_shape(app: Flask, build: Builders) -> None:
    rng = random.Random(181)
    supervisor, admin = build.usuario(2), build.usuario(3)
    agentes = [build.usuario(1) for _ in range(3)]
    _efectivos(build, rng, agentes)
    filter_sets: list[dict[str, Any]] = [
        {},
        {"activo": None},
        {"activo": False},
        {"estados": [Disponibilidad.DISPONIBLE, Disponibilidad.EN_TAREA], "activo": None},
        {"unidad": "Móvil 101"},
        {"especialidad": "patrulla"},
        {"en_servicio": True, "activo": None},
        {"en_servicio": False},
        {"q": "ñandú"},
        {"q": "%_\\"},
    ]
    with app.app_context():
        compared = 0
        for actor_id in [supervisor.id, admin.id, *(a.id for a in agentes)]:
            actor = db.session.get(Usuario, actor_id)
            assert actor is not None
            for i, extra in enumerate(filter_sets):
                filters = {"estados": None, "unidad": None, "especialidad": None, "activo": True, "q": None, "en_servicio": None} | extra
                limit, offset = PAGE_SHAPES[i % len(PAGE_SHAPES)]
                body = efectivos.list_efectivos_json(actor, **filters, limit=limit, offset=offset)
                Page[EfectivoOut].model_validate_json(body)
                assert _values(body) == _values(_python_efectivos(actor, filters, limit, offset)), (actor_id, extra, limit, offset)
                compared += len(json.loads(body)["items"])
        assert compared > 150


def _usuarios(build: Builders) -> None:
    flags: list[Any] = [None, {}, {"debe_cambiar_clave": True}, {"debe_cambiar_clave": False}, {"debe_cambiar_clave": 0}, {"debe_cambiar_clave": 1}]
    flags += [{"debe_cambiar_clave": ""}, {"debe_cambiar_clave": "x"}, {"debe_cambiar_clave": []}, {"debe_cambiar_clave": {}}, {"debe_cambiar_clave": None}]
    flags += [{"debe_cambiar_clave": 0.0}, {"debe_cambiar_clave": [0]}, {"other": True}]
    instants = [*INSTANTS, *EXTREME_INSTANTS]
    for n in range(40):
        build.usuario(
            1 + n % 3,
            email=f"eq{n}@gad.test" if n % 5 else f"ñandú.{n}@gad.test",
            nombre=_text(n, "Ana", 100).ljust(1, "·"),
            apellido=_text(n + 3, "Pérez", 100).ljust(2, "·"),
            dni=f"{n:07d}ñ" if n % 3 else f"X{n:07d}",
            telefono=None if n % 2 else ["+34 600 000 000", "🚓 112", ""][n % 3],
            telegram_id=None if n % 4 == 0 else [n + 1, 2**63 - 1 - n, 123456789 + n][n % 3],
            verificado=n % 3 == 0,
            activo=n % 5 != 4,
            ultimo_acceso=instants[n % len(instants)],
            extra=flags[n % len(flags)],
            version=[1, 7, 2**31 - 1][n % 3],
            created_at=instants[(n * 3) % len(instants)] or TIEMPO_MIN,
        )


def _python_usuarios(actor: Usuario, filters: dict[str, Any], limit: int, offset: int) -> str:
    """What the view answered before (gad/blueprints/usuarios.py ``_view`` per row through json.dumps)."""
    items, total = usuarios.list_usuarios(actor, **filters, limit=limit, offset=offset)
    views = [UsuarioOut.model_validate(u).model_dump(mode="json", exclude=set(policy.hidden_personal_fields(actor, u.id))) for u in items]
    return json.dumps({"items": views, "total": total, "limit": limit, "offset": offset}, default=str)


def test_postgres_built_usuarios_equal_the_python_path_and_hide_the_same_fields(app: Flask, build: Builders) -> None:
    supervisor, admin, agente = build.usuario(2, telefono="+34 1", telegram_id=77), build.usuario(3, telegram_id=78), build.usuario(1)
    _usuarios(build)
    linked = [build.efectivo(usuario_id=agente.id).usuario_id]
    filter_sets: list[dict[str, Any]] = [{}, {"nivel": 1}, {"nivel": 3, "activo": True}, {"activo": False}, {"q": "ñandú"}, {"q": "%_\\"}, {"q": "ñ"}]
    filter_sets += [{"con_efectivo": True}, {"nivel": 1, "activo": True, "con_efectivo": False}]
    with app.app_context():
        hidden_seen = 0
        for actor_id in [supervisor.id, admin.id]:
            actor = db.session.get(Usuario, actor_id)
            assert actor is not None
            for i, extra in enumerate(filter_sets):
                filters = {"nivel": None, "activo": None, "q": None} | extra
                limit, offset = PAGE_SHAPES[i % len(PAGE_SHAPES)]
                body = usuarios.list_usuarios_json(actor, **filters, limit=limit, offset=offset)
                Page[UsuarioOut].model_validate_json(body)
                assert _values(body) == _values(_python_usuarios(actor, filters, limit, offset)), (actor_id, extra, limit, offset)
                hidden_seen += sum("dni" not in item for item in json.loads(body)["items"])
            # The whole list at once: the actor's own row keeps every field, the others' as policy says.
            everything = json.loads(usuarios.list_usuarios_json(actor, nivel=None, activo=None, q=None, limit=200, offset=0))
            own = next(item for item in everything["items"] if item["id"] == actor.id)
            assert {"dni", "telefono", "telegram_id"} <= own.keys()
            assert _values(json.dumps(everything)) == _values(_python_usuarios(actor, {"nivel": None, "activo": None, "q": None}, 200, 0))
            assert any(item["debe_cambiar_clave"] for item in everything["items"]) and not all(item["debe_cambiar_clave"] for item in everything["items"])
        assert hidden_seen > 20  # the supervisor's pages left dni out
        # The new-efectivo dialog offers only usuarios no efectivo is linked to (offered one, the create was a 409).
        actor = db.session.get(Usuario, admin.id)
        assert actor is not None
        with_one = json.loads(usuarios.list_usuarios_json(actor, nivel=None, activo=None, q=None, con_efectivo=True, limit=200, offset=0))
        without = json.loads(usuarios.list_usuarios_json(actor, nivel=1, activo=None, q=None, con_efectivo=False, limit=200, offset=0))
        assert [item["id"] for item in with_one["items"]] == linked and agente.id not in {item["id"] for item in without["items"]}
        assert without["total"] > 10
        for path in (usuarios.list_usuarios, usuarios.list_usuarios_json):
            with pytest.raises(Forbidden):
                path(db.session.get(Usuario, agente.id), nivel=None, activo=None, q=None, limit=5, offset=0)  # type: ignore[operator]


def _eventos(app: Flask, build: Builders, actor_ids: list[int]) -> None:
    instants = [i for i in [*INSTANTS, *EXTREME_INSTANTS] if i is not None]
    with app.app_context():
        start = (db.session.scalar(select(func.max(Evento.id))) or 0) + 1
        for n in range(70):
            db.session.add(
                Evento(
                    id=start + n,
                    event_type=["task_created", "efectivo_updated", "login_failed", "ñ_evento"][n % 4],
                    topic=["tareas", "efectivos", "security"][n % 3],
                    entity_type=["tarea", "efectivo", "usuario"][n % 3],
                    entity_id=[None, 1, 2**63 - 1, 42][n % 4],
                    actor_id=[None, *actor_ids][n % (len(actor_ids) + 1)],
                    request_id=None if n % 3 == 0 else ("req-" + "x" * 60)[: 4 + n],
                    payload=PAYLOADS[n % len(PAYLOADS)],
                    created_at=instants[n % len(instants)],
                    prev_hash=f"{n:064x}",
                    hash=f"{n + 1:064x}",
                )
            )
        db.session.commit()


def test_postgres_built_eventos_equal_the_python_path_with_the_same_cursor(app: Flask, build: Builders) -> None:
    admin, supervisor = build.usuario(3), build.usuario(2)
    _eventos(app, build, [admin.id, supervisor.id])
    with app.app_context():
        first = db.session.scalar(select(func.min(Evento.id)))
        assert first is not None
        filter_sets: list[dict[str, Any]] = [
            {},
            {"after_id": first + 10},
            {"actor_id": admin.id},
            {"entity_type": "tarea", "entity_id": 42},
            {"event_type": "ñ_evento"},
            {"desde": TIEMPO_MIN, "hasta": TIEMPO_MAX},
            {"desde": datetime(2026, 11, 30, tzinfo=UTC)},
            {"after_id": 10**12},
        ]
        actor = db.session.get(Usuario, admin.id)
        assert actor is not None
        cursors = 0
        for extra in filter_sets:
            for limit in (1, 7, 69, 70, 71, 500):
                filters = {"actor_id": None, "entity_type": None, "entity_id": None, "event_type": None, "desde": None, "hasta": None, "after_id": 0} | extra
                body = audit.list_events_json(actor, **filters, limit=limit)
                EventoPage.model_validate_json(body)
                items, next_cursor = audit.list_events(actor, **filters, limit=limit)
                expected = EventoPage(items=[EventoOut.model_validate(e) for e in items], next_cursor=next_cursor).model_dump_json()
                assert _values(body) == _values(expected), (extra, limit)
                cursors += next_cursor is not None
        assert cursors > 5
        for path in (audit.list_events, audit.list_events_json):
            with pytest.raises(Forbidden):
                path(
                    db.session.get(Usuario, supervisor.id),
                    actor_id=None,
                    entity_type=None,
                    entity_id=None,
                    event_type=None,
                    desde=None,
                    hasta=None,
                    after_id=0,
                    limit=5,
                )  # type: ignore[operator]


def test_postgres_built_historial_equals_the_python_path_with_the_same_visibility(app: Flask, build: Builders) -> None:
    supervisor, delegado, other = build.usuario(2), build.usuario(1), build.usuario(1)
    worker = build.usuario(1)
    efectivo = build.efectivo(usuario_id=worker.id)
    estados = [None, *EstadoTarea]
    instants = [i for i in INSTANTS if i is not None]
    tarea_ids = []
    for n in range(6):
        tarea = build.tarea(supervisor, delegado_usuario_id=delegado.id if n % 2 else None, es_emergencia=n == 4)
        tarea_ids.append(tarea.id)
        if n == 3:
            build.asignacion(tarea, efectivo)
        with app.app_context():
            for k in range([0, 1, 12, 3, 5, 2][n]):
                db.session.add(
                    HistorialEstado(
                        tarea_id=tarea.id,
                        estado_anterior=None if estados[k % len(estados)] is None else str(estados[k % len(estados)]),
                        estado_nuevo=str(list(EstadoTarea)[k % len(EstadoTarea)]),
                        usuario_id=[None, supervisor.id, delegado.id][k % 3],
                        motivo=TEXTS[k % len(TEXTS)] and (TEXTS[k % len(TEXTS)] or "")[:500],
                        extra={"k": k} if k % 2 else None,
                        created_at=instants[k % len(instants)],
                    )
                )
            db.session.commit()
    with app.app_context():
        deleted = db.session.get(Tarea, tarea_ids[-1])
        assert deleted is not None
        deleted.deleted_at = datetime.now(UTC)
        db.session.commit()
        compared = refused = 0
        for actor_id in (supervisor.id, delegado.id, other.id, worker.id):
            actor = db.session.get(Usuario, actor_id)
            assert actor is not None
            for tarea_id in [*tarea_ids, 10**9]:
                try:
                    rows = tareas.historial(actor, tarea_id)
                except (NotFound, Forbidden) as exc:
                    with pytest.raises(type(exc), match=str(exc.args[0])):
                        tarea_json.historial_json(actor, tarea_id)
                    refused += 1
                    continue
                body = tarea_json.historial_json(actor, tarea_id)
                TypeAdapter(list[HistorialOut]).validate_json(body)
                expected = json.dumps([HistorialOut.model_validate(r).model_dump(mode="json") for r in rows], default=str)
                assert _values(body) == _values(expected), (actor_id, tarea_id)
                compared += len(rows)
        assert compared > 25 and refused > 10


def test_lists_answer_the_built_json(client: FlaskClient, build: Builders) -> None:
    admin = build.usuario(3)
    efectivo = build.efectivo(nombre="Álvaro 🚓")
    tarea = build.tarea(admin)
    headers = build.headers(admin)
    answers = {
        "/api/v1/efectivos?limit=1": lambda doc: doc["items"][0]["nombre"] == efectivo.nombre and doc["total"] == 1,
        "/api/v1/users?limit=5": lambda doc: doc["items"][0]["dni"] == admin.dni,
        "/api/v1/eventos?limit=5": lambda doc: doc == {"items": [], "next_cursor": None},
        f"/api/v1/tasks/{tarea.id}/historial": lambda doc: doc == [],
    }
    for path, check in answers.items():
        response = client.get(path, headers=headers)
        assert response.status_code == 200 and response.mimetype == "application/json", path
        assert check(response.get_json()), (path, response.get_json())
