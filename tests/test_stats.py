"""Per-usuario statistics: totals by estado, duration without pauses, productivity per day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from tests.builders import Builders


def test_user_stats_totals_duration_excluding_pauses_and_per_day(client: FlaskClient, build: Builders) -> None:
    sup, user = build.usuario(2), build.usuario(1)
    efectivo = build.efectivo(usuario_id=user.id)
    end = datetime.now(UTC) - timedelta(hours=1)
    done = build.tarea(sup, estado="finalizada", inicio_real=end - timedelta(hours=3), fin_real=end, tiempo_pausado_s=3600)
    build.asignacion(done, efectivo)
    build.tarea(sup, delegado_usuario_id=user.id)
    build.tarea(sup)  # not involving the user
    stats = client.get(f"/api/v1/stats/user/{user.id}?days=30", headers=build.headers(user)).get_json()
    assert stats["totales_por_estado"]["finalizada"] == 1 and stats["totales_por_estado"]["programada"] == 1 and stats["total"] == 2
    assert stats["duracion_media_horas"] == pytest.approx(2.0)
    assert stats["finalizadas_por_dia"] == [{"fecha": end.date().isoformat(), "finalizadas": 1}]
    other = build.usuario(1)
    assert client.get(f"/api/v1/stats/user/{other.id}", headers=build.headers(user)).status_code == 403
    assert client.get(f"/api/v1/stats/user/{user.id}?days=0", headers=build.headers(user)).status_code == 422
    assert client.get("/api/v1/stats/user/99999", headers=build.headers(sup)).status_code == 404
