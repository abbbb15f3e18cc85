"""Cache administration for administradores: statistics and a prefix-scoped clear."""

from __future__ import annotations

from flask import Blueprint, Response

from gad import caching, policy
from gad.blueprints.http import json_response, no_content, no_input, no_query
from gad.openapi import documented
from gad.schemas.dispatch import CacheStatsOut
from gad.security import current_user, require_authentication
from gad.vocab import Nivel

bp = Blueprint("cache_admin", __name__, url_prefix="/api/v1/cache")
bp.before_request(require_authentication)


@bp.get("/stats")
@documented(tags=("admin",), resp={"HTTP_200": CacheStatsOut})
def cache_stats() -> Response:
    no_query()
    policy.require_nivel(current_user(), Nivel.ADMINISTRADOR, "Cache administration")
    return json_response(CacheStatsOut.model_validate(caching.stats()))


@bp.post("/clear")
@documented(tags=("admin",), resp={"HTTP_204": None})
def cache_clear() -> Response:
    no_input()
    policy.require_nivel(current_user(), Nivel.ADMINISTRADOR, "Cache administration")
    caching.clear_all()
    return no_content()
