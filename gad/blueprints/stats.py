"""Statistics and the command-centre summary (cached; see gad/caching.py)."""

from __future__ import annotations

from flask import Blueprint, Response

from gad.blueprints.http import json_response, no_query, parse_query
from gad.openapi import documented
from gad.schemas.dispatch import ResumenOut, StatsQuery, UserStatsOut
from gad.security import current_user, require_authentication
from gad.services import stats

bp = Blueprint("stats", __name__, url_prefix="/api/v1")
bp.before_request(require_authentication)


@bp.get("/stats/user/<int:usuario_id>")
@documented(tags=("stats",), query=StatsQuery, resp={"HTTP_200": UserStatsOut})
def user_stats(usuario_id: int) -> Response:
    query = parse_query(StatsQuery)
    return json_response(UserStatsOut.model_validate(stats.user_stats(current_user(), usuario_id, query.days)))


@bp.get("/dashboard/resumen")
@documented(tags=("stats",), resp={"HTTP_200": ResumenOut})
def resumen() -> Response:
    no_query()
    return json_response(ResumenOut.model_validate(stats.resumen(current_user())))
