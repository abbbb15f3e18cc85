"""Builders for test data: ``build.tarea(**overrides)`` instead of hand-copied fixtures."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from flask import Flask
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import Range

from gad.extensions import db
from gad.models import Alerta, Asignacion, Efectivo, Licencia, Notificacion, Tarea, Turno, Usuario, utcnow
from gad.services import auth
from gad.vocab import ESTADOS_FINALES

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


@lru_cache(maxsize=1)
def _password_hash() -> str:
    # argon2 is deliberately slow; hash the shared test password once per run.
    return auth._hasher().hash(PASSWORD)


class Builders:
    def __init__(self, app: Flask) -> None:
        self.app = app

    def _save(self, obj: Any) -> Any:
        with self.app.app_context():
            db.session.add(obj)
            db.session.commit()
            db.session.expunge(obj)
        return obj

    def usuario(self, nivel: int = 1, **overrides: Any) -> Usuario:
        n = next(_counter)
        values: dict[str, Any] = {
            "email": f"user{n}@gad.test",
            "dni": f"{n:08d}X",
            "nombre": f"Nombre{n}",
            "apellido": f"Apellido{n}",
            "nivel": nivel,
            "password_hash": _password_hash(),
            "verificado": True,
        }
        values.update(overrides)
        return self._save(Usuario(**values))  # type: ignore[no-any-return]

    def efectivo(self, **overrides: Any) -> Efectivo:
        n = next(_counter)
        values: dict[str, Any] = {"codigo_interno": f"EF{n:05d}", "nombre": f"Agente {n}", "unidad": "Móvil 101", "especialidad": "patrulla"}
        values.update(overrides)
        return self._save(Efectivo(**values))  # type: ignore[no-any-return]

    def tarea(self, creado_por: Usuario, **overrides: Any) -> Tarea:
        n = next(_counter)
        now = utcnow()
        values: dict[str, Any] = {
            "codigo": f"T-{n:06d}",
            "titulo": f"Tarea de prueba {n}",
            "tipo": "patrullaje",
            "prioridad": 3,
            "inicio_programado": now + timedelta(hours=1),
            "fin_programado": now + timedelta(hours=3),
            "creado_por_usuario_id": creado_por.id,
        }
        values.update(overrides)
        if values.get("estado") in ESTADOS_FINALES:
            values.setdefault("cerrada_en", values.get("fin_real") or now)
        return self._save(Tarea(**values))  # type: ignore[no-any-return]

    def asignacion(self, tarea: Tarea, efectivo: Efectivo) -> Asignacion:
        return self._save(Asignacion(tarea_id=tarea.id, efectivo_id=efectivo.id))  # type: ignore[no-any-return]

    def asignacion_historica(self, tarea: Tarea, efectivo: Efectivo, en: datetime, hasta: datetime | None) -> Asignacion:
        """An assignment at a known time (reports): also the tarea's first assignment if it is the earliest."""
        asignacion = self._save(Asignacion(tarea_id=tarea.id, efectivo_id=efectivo.id, asignado_en=en, liberado_en=hasta))
        with self.app.app_context():
            db.session.execute(
                text("UPDATE tareas SET primera_asignacion_en = least(coalesce(primera_asignacion_en, :en), :en) WHERE id = :id"), {"en": en, "id": tarea.id}
            )
            db.session.commit()
        return asignacion  # type: ignore[no-any-return]

    def turno(self, efectivo: Efectivo, inicio: datetime | None = None, horas: float = 8, **overrides: Any) -> Turno:
        start = inicio or utcnow().replace(microsecond=0)
        values: dict[str, Any] = {
            "efectivo_id": efectivo.id,
            "unidad": efectivo.unidad,
            "tipo": "servicio",
            "periodo": Range(start, start + timedelta(hours=horas), bounds="[)"),
        }
        values.update(overrides)
        return self._save(Turno(**values))  # type: ignore[no-any-return]

    def licencia(self, efectivo: Efectivo, inicio: datetime, dias: float = 1, **overrides: Any) -> Licencia:
        values: dict[str, Any] = {"efectivo_id": efectivo.id, "tipo": "vacaciones", "periodo": Range(inicio, inicio + timedelta(days=dias), bounds="[)")}
        values.update(overrides)
        return self._save(Licencia(**values))  # type: ignore[no-any-return]

    def alerta(self, creado_por: Usuario, **overrides: Any) -> Alerta:
        values: dict[str, Any] = {
            "tipo": "aviso",
            "texto": "Aviso de prueba",
            "prioridad": 3,
            "destino": "usuarios",
            "total": 0,
            "creado_por_usuario_id": creado_por.id,
        }
        values.update(overrides)
        return self._save(Alerta(**values))  # type: ignore[no-any-return]

    def notificacion(self, usuario: Usuario, **overrides: Any) -> Notificacion:
        """A ledger row as the services write it (no event): for reads, answers and the authorization matrix."""
        values: dict[str, Any] = {
            "usuario_id": usuario.id,
            "causa": "alerta",
            "titulo": "Aviso",
            "texto": "Texto del aviso",
            "prioridad": 3,
            "requiere_respuesta": True,
        }
        values.update(overrides)
        return self._save(Notificacion(**values))  # type: ignore[no-any-return]

    def token(self, usuario: Usuario) -> str:
        with self.app.app_context():
            fresh = db.session.get(Usuario, usuario.id)
            assert fresh is not None
            return auth.issue_token(fresh).access_token

    def headers(self, usuario: Usuario, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(usuario)}", **extra}
