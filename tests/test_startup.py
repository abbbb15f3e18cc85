"""A serving worker's start-up does only what serving needs: the collector spared the import, Flask-Limiter, rare statements and bcrypt at first use, no annotation eval'd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import ROOT, start_gunicorn, stop_gunicorn


def _login(url: str, ip: str, attempt: int) -> requests.Response:
    # A different e-mail each time, so only the per-address limit can refuse (not the lockout or slow-down).
    body = {"email": f"nadie{attempt}@gad.test", "password": "x"}
    return requests.post(url + "/api/v1/auth/login", json=body, headers={"Fly-Client-IP": ip}, timeout=30)


def test_a_gunicorn_worker_imports_without_the_collector_then_collects_and_binds_the_login_limit_at_the_first_login(database_url: str, tmp_path: Path) -> None:
    live = start_gunicorn(
        database_url, app_spec="tests.support.startup_wsgi:app", tmp=tmp_path, extra_env={"LOGIN_RATE_LIMIT": "2 per minute", "TRUST_PROXY": "1"}
    )
    try:
        state = live.get("/_test/startup").json()
        assert state["collector_on_during_import"] is False
        # On again once the worker booted, with what the import built set aside (a GAD worker holds ~190,000).
        assert state["collector_on"] is True and state["frozen_objects"] > 50_000, state
        # argon2-cffi too is loaded by the first password a worker checks (fifth pass), not by its import.
        assert not {"flask_limiter", "limits", "argon2"} & set(state["imported"]), state

        # The first login imports and binds the limiter in a worker that has served requests already, and the
        # limit holds from that first login on.
        statuses = [_login(live.url, "198.51.100.30", i).status_code for i in range(3)]
        assert statuses == [401, 401, 429], statuses
        assert {"flask_limiter", "limits", "argon2"} <= set(live.get("/_test/startup").json()["imported"])
        assert _login(live.url, "198.51.100.31", 3).status_code == 401  # another address has its own counter
    finally:
        stop_gunicorn(live)


def test_the_command_line_binds_the_limiter_at_once_for_flask_limiters_own_commands() -> None:
    # `flask limiter limits` lists the limits of the app the command line built: the login limit is there
    # before any request, as with an eagerly bound Flask-Limiter.
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": "postgresql://gad@127.0.0.1:1/none", "LOGIN_RATE_LIMIT": "7 per minute"}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "limiter", "limits"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    for route in ("auth.login: /api/v1/auth/login", "pages.login_submit: /login"):
        at = next(i for i, line in enumerate(lines) if route in line)
        assert "7 per 1 minute" in lines[at + 1], result.stdout[-2000:]


# For probes: every subclass of a class, at any depth.
_SUBCLASSES = "def below(c):\n    for s in c.__subclasses__():\n        yield s\n        yield from below(s)\n"


def _run_in_a_fresh_worker(probe: str) -> None:
    """Run ``probe`` in a new interpreter, as a worker's first import would (no database reached)."""
    env = os.environ | {"GAD_ENV": "development", "DATABASE_URL": "postgresql://gad@127.0.0.1:1/none"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_worker_builds_no_schema_validator_before_the_schema_is_used() -> None:
    # Each validator and serializer is built the first time its schema is used (defer_build), never at import;
    # a parametrised Page (Page[EfectivoOut]), which pydantic builds in full, only by the API document's
    # generation (gad.openapi.PageOf) or the first request that answers one.
    probe = (
        "import wsgi; from pydantic import BaseModel\n"
        + _SUBCLASSES
        + "built = {f'{c.__module__}.{c.__qualname__}' for c in below(BaseModel) if c.__module__.startswith('gad') and c.__pydantic_complete__}\n"
        "assert not built, sorted(built)\n"
        "import gad.schemas.common as common; assert common.Problem.model_validate({'type': 'about:blank', 'title': 't', 'status': 400, 'detail': 'd'}).status == 400\n"
    )
    _run_in_a_fresh_worker(probe)


def test_a_worker_leaves_to_first_use_what_few_requests_need_and_evaluates_no_annotation_strings() -> None:
    # What a worker's import no longer does (issue 18 item 5): the tarea, efectivo and evento JSON statements
    # and the reports' statements are built by the first request that runs them; bcrypt is loaded by the first carried-over hash a login
    # checks; no template uses Flask-Caching's {% cache %} tag, so jinja2.ext is not loaded. And the mapped
    # classes and schemas hold their annotations as objects: as strings (``from __future__ import annotations``)
    # SQLAlchemy and pydantic eval'd each one at import, ~85 M instructions per worker boot.
    probe = (
        "import sys, wsgi\n"
        "from gad.services import audit, efectivos, reportes, tarea_json\n"
        "lazy = (tarea_json._one, tarea_json._historial, tarea_json._page_object, efectivos._page_item, audit._event_item,\n"
        "        reportes._histograma, reportes._resultados_q, reportes._sin_asignar_q, reportes._carga, reportes._export)\n"
        "assert all(f.cache_info().currsize == 0 for f in lazy), [f.__qualname__ for f in lazy if f.cache_info().currsize]\n"
        "assert not {'bcrypt', 'jinja2.ext'} & set(sys.modules), sorted({'bcrypt', 'jinja2.ext'} & set(sys.modules))\n"
        "from pydantic import BaseModel\n"
        "from gad.models import Base\n"
        + _SUBCLASSES
        + "classes = [m.class_ for m in Base.registry.mappers] + [c for c in below(BaseModel) if c.__module__.startswith('gad.schemas')]\n"
        "assert len(classes) > 100, len(classes)\n"
        "strings = sorted(f'{c.__module__}.{c.__qualname__}.{n}' for c in classes for n, a in vars(c).get('__annotations__', {}).items() if isinstance(a, str))\n"
        "assert not strings, strings\n"
    )
    _run_in_a_fresh_worker(probe)


def test_a_workers_schemas_skip_pydantics_field_name_check_and_its_classes_are_no_dataclasses() -> None:
    # Issue 18 item 5, fifth pass. Every GAD schema is configured by gad.schemas.common.schema_config: pydantic
    # does not check each field (each inherited one again in every subclass) against its protected ``model_``
    # prefixes, which was a fifth of creating an event payload class — so no GAD field may start with ``model_``.
    # And no class a worker imports is a dataclass: each execs its generated methods at import (~3 M instructions).
    probe = (
        "import dataclasses, sys, wsgi\n"
        "from pydantic import BaseModel\n" + _SUBCLASSES + "schemas = [c for c in below(BaseModel) if c.__module__.startswith('gad')]\n"
        "assert len(schemas) > 100, len(schemas)\n"
        "checked = sorted(c.__qualname__ for c in schemas if c.model_config.get('protected_namespaces') != ())\n"
        "assert not checked, checked\n"
        "deferred = sorted(c.__qualname__ for c in schemas if c.model_config.get('defer_build') is not True)\n"
        "assert not deferred, deferred\n"
        "named = sorted(f'{c.__qualname__}.{n}' for c in schemas for n in c.model_fields if n.startswith('model_'))\n"
        "assert not named, named\n"
        "gad = [m for name, m in list(sys.modules.items()) if name.startswith('gad') and m is not None]\n"
        "classes = [v for m in gad for v in vars(m).values() if isinstance(v, type) and v.__module__ == m.__name__]\n"
        "found = sorted(f'{c.__module__}.{c.__qualname__}' for c in classes if dataclasses.is_dataclass(c))\n"
        "assert not found, found\n"
    )
    _run_in_a_fresh_worker(probe)
