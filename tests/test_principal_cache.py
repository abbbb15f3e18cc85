"""Recently verified tokens are reused by reads, and never outlive a revocation (real gunicorn workers)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg2
import pytest
import requests

from tests.builders import Builders
from tests.conftest import LiveServer, start_gunicorn, stop_gunicorn
from tests.helpers import PROBLEM, wait_until_heard

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def other_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A second gunicorn on the same database, as another worker or machine would be."""
    server = start_gunicorn(database_url, workers=1, tmp=tmp_path_factory.mktemp("principals"))
    yield server
    stop_gunicorn(server)


def _cache_hits(server: LiveServer) -> float:
    text = server.get("/metrics").text
    match = re.search(r"^gad_auth_cache_hits_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_reads_reuse_a_verified_token_and_logout_ends_it_at_once(live_server: LiveServer, build: Builders) -> None:
    usuario = build.usuario(2)
    headers = build.headers(usuario)
    before = _cache_hits(live_server)
    assert all(live_server.get("/api/v1/users/me", headers=headers).status_code == 200 for _ in range(5))
    assert _cache_hits(live_server) >= before + 4  # the first read verified the token, the next four reused it

    assert live_server.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert live_server.get("/api/v1/users/me", headers=headers).status_code == 401


def test_password_change_and_demotion_hold_for_the_very_next_read(live_server: LiveServer, build: Builders) -> None:
    admin = build.headers(build.usuario(3))
    supervisor = build.usuario(2)
    old = build.headers(supervisor)
    assert live_server.get("/api/v1/efectivos", headers=old).status_code == 200  # cached from here on

    demoted = requests.patch(live_server.url + f"/api/v1/users/{supervisor.id}", json={"nivel": 1}, headers=admin, timeout=10)
    assert demoted.status_code == 200
    # The token carries the old nivel, but the usuario now is an efectivo-level user: no cached nivel 2.
    me = live_server.get("/api/v1/users/me", headers=old)
    assert me.status_code == 200 and me.json()["nivel"] == 1

    changed = requests.patch(live_server.url + f"/api/v1/users/{supervisor.id}", json={"password": "another-long-password-2026"}, headers=admin, timeout=10)
    assert changed.status_code == 200
    assert live_server.get("/api/v1/users/me", headers=old).status_code == 401


def test_a_logout_anywhere_reaches_the_cache_of_every_process(live_server: LiveServer, other_server: LiveServer, build: Builders, database_url: str) -> None:
    usuario = build.usuario(1)
    headers = build.headers(usuario)
    admin = build.headers(build.usuario(3))
    for server in (live_server, other_server):
        assert [server.get("/api/v1/users/me", headers=headers).status_code for _ in range(3)] == [200] * 3

    assert live_server.post("/api/v1/auth/logout", headers=headers).status_code == 204
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT max(id) FROM eventos WHERE event_type = 'logout'")
            logout_id = int(cur.fetchone()[0])
    finally:
        conn.close()
    wait_until_heard(other_server, admin, logout_id)  # the other process hears of the commit through its listener
    hits = _cache_hits(other_server)
    assert other_server.get("/api/v1/users/me", headers=headers).status_code == 401
    assert _cache_hits(other_server) == hits  # it was refused by the database, not by luck of a cold cache


def test_writes_always_verify_against_the_database(live_server: LiveServer, build: Builders, database_url: str) -> None:
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    assert live_server.get("/api/v1/efectivos", headers=headers).status_code == 200
    # Deactivate behind the service's back (no event): only the cache's lifetime bounds reads, writes see it now.
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("UPDATE usuarios SET activo = false WHERE id = %s", (supervisor.id,))
    conn.close()
    created = live_server.post("/api/v1/efectivos", json={"codigo_interno": "EF-CACHE", "nombre": "Agente Cache"}, headers=headers)
    assert created.status_code == 401


def test_a_fill_that_raced_with_a_revocation_is_not_kept() -> None:
    from gad.principal_cache import PrincipalCache

    cache = PrincipalCache()
    cache.set_listener_connected(True)
    generation = cache.generation  # a request starts verifying against PostgreSQL...
    cache.invalidate_for_topics({"seguridad"})  # ...a logout commits meanwhile...
    cache.put("token", "stale", seconds=30, generation=generation)  # ...and its answer arrives late
    assert cache.get("token") is None
    cache.put("token", "fresh", seconds=30, generation=cache.generation)
    assert cache.get("token") == "fresh"
    cache.invalidate_for_topics({"tareas"})  # events that change no credentials keep it
    assert cache.get("token") == "fresh"


def test_nothing_is_reused_while_the_listener_is_down_or_after_it_reconnects() -> None:
    from gad.principal_cache import PrincipalCache

    cache = PrincipalCache()
    assert not cache.usable(30)  # never connected: every read verifies against PostgreSQL
    cache.set_listener_connected(True)
    cache.put("token", "principal", seconds=30, generation=cache.generation)
    cache.set_listener_connected(False)
    assert not cache.usable(30)
    cache.set_listener_connected(True)  # events may have been missed meanwhile
    assert cache.get("token") is None
    assert not cache.usable(0)  # AUTH_CACHE_SECONDS=0 turns it off


def test_an_entry_ends_with_its_lifetime() -> None:
    from gad.principal_cache import PrincipalCache

    cache = PrincipalCache()
    cache.set_listener_connected(True)
    cache.put("token", "principal", seconds=-1, generation=cache.generation)  # e.g. the token's exp has passed
    assert cache.get("token") is None


def test_a_listener_without_sockets_takes_the_head_and_the_topics_from_the_notifications() -> None:
    """With no socket open a worker's listener reads no rows: the notification carries the head id and the
    topics, enough to drop the cache on a credential change; with a socket open, or a notification without
    topics (an older worker during a deploy), or on the safety poll, it reads the rows as before."""
    from gad.principal_cache import principals
    from gad.realtime.hub import Hub

    hub = Hub()
    hub.last_id = 10
    was_connected = principals.listener_connected
    principals.set_listener_connected(True)
    try:
        principals.put("token", "principal", seconds=30, generation=principals.generation)
        assert hub._skip_unwatched(["11 tareas", "13 emergencias,tareas"]) and hub.last_id == 13
        assert principals.get("token") == "principal"  # no credentials changed
        assert hub._skip_unwatched(["14 seguridad"]) and hub.last_id == 14 and principals.get("token") is None
        assert not hub._skip_unwatched(["15"]) and not hub._skip_unwatched([]) and hub.last_id == 14
        hub.connections.add(object())  # type: ignore[arg-type]  # any socket: its events must be read and sent
        assert not hub._skip_unwatched(["16 tareas"]) and hub.last_id == 14
    finally:
        principals.set_listener_connected(was_connected)


# Past the cache's warm-up: the first denials write their permission_denied event (which drops the cache), then
# repeats within SECURITY_EVENT_WINDOW_S are only counted, and the token is served from the cache from there on.
_PAST_WARM_UP = 8


@pytest.mark.parametrize(
    ("nivel", "path"),
    [(1, "/usuarios"), (1, "/planificacion"), (1, "/informes"), (1, "/tareas/nueva"), (2, "/usuarios")],
)
def test_a_page_refused_to_a_cached_token_stays_403(live_server: LiveServer, build: Builders, nivel: int, path: str) -> None:
    """A page resolves its caller once per request, however many hooks ask: two copies of one usuario built from
    the token cache used to meet in the session the 403's audit opens (500 from the fourth request on)."""
    headers = build.headers(build.usuario(nivel))
    answers = [live_server.get(path, headers=headers, allow_redirects=False) for _ in range(_PAST_WARM_UP)]
    assert [a.status_code for a in answers] == [403] * _PAST_WARM_UP, [a.text[:200] for a in answers]
    assert all(a.headers["Content-Type"] == PROBLEM and a.json()["code"] == "forbidden" for a in answers)
    assert live_server.get("/api/v1/users/me", headers=headers).json()["nivel"] == nivel  # the caller is unchanged


def test_an_api_call_refused_to_a_cached_token_stays_403(live_server: LiveServer, build: Builders) -> None:
    headers = build.headers(build.usuario(1))
    answers = [live_server.get("/api/v1/planificacion/semana", headers=headers) for _ in range(_PAST_WARM_UP)]
    assert [a.status_code for a in answers] == [403] * _PAST_WARM_UP, [a.text[:200] for a in answers]
    assert all(a.headers["Content-Type"] == PROBLEM and a.json()["code"] == "forbidden" for a in answers)
