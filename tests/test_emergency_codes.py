"""Emergency codes nobody can block: the EMG- prefix is reserved, numbers come from a sequence, and 50 concurrent
emergencies all succeed with squatted and soft-deleted codes present. Over real HTTP, on real PostgreSQL."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import requests

from tests.builders import Builders
from tests.conftest import LiveServer
from tests.helpers import assert_422_naming, tarea_body


def test_emg_prefix_is_reserved_for_emergencies(live_server: LiveServer, build: Builders) -> None:
    supervisor = build.usuario(2)
    headers = build.headers(supervisor)
    url = live_server.url + "/api/v1/tasks"
    day = datetime.now(UTC).strftime("%Y%m%d")
    assert_422_naming(requests.post(url, json=tarea_body(f"EMG-{day}-0003"), headers=headers, timeout=30), "body.codigo")
    ordinary = requests.post(url, json=tarea_body("NORMAL-1"), headers=headers, timeout=30)
    assert ordinary.status_code == 201
    patched = requests.patch(
        f"{url}/{ordinary.json()['id']}", json={"codigo": f"EMG-{day}-0004"}, headers=headers | {"If-Match": ordinary.headers["ETag"]}, timeout=30
    )
    assert_422_naming(patched, "body.codigo")
    assert requests.get(f"{url}/{ordinary.json()['id']}", headers=headers, timeout=30).json()["codigo"] == "NORMAL-1"


def test_fifty_concurrent_emergencies_all_created_despite_squatted_and_deleted_codes(live_server: LiveServer, build: Builders, database_url: str) -> None:
    admin = build.usuario(3)
    efectivo_user = build.usuario(1)
    day = datetime.now(UTC).strftime("%Y%m%d")
    # Codes held by rows the numbering does not own: an ordinary tarea from before the prefix was reserved,
    # a soft-deleted one, and an emergency-looking one further on. Counting them used to give a taken code.
    squatted = {f"EMG-{day}-0001": False, f"EMG-{day}-0002": True, f"EMG-{day}-0004": False, f"EMG-{day}-0007": True}
    for codigo, deleted in squatted.items():
        build.tarea(admin, codigo=codigo, deleted_at=datetime.now(UTC) if deleted else None)
    for n in range(5):
        build.efectivo(lat=40.4 + n / 1000, lon=-3.7, posicion_en=datetime.now(UTC))
    tokens = [build.token(u) for u in (admin, efectivo_user)]
    results: list[requests.Response] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def raise_one(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            response = requests.post(
                live_server.url + "/api/v1/tasks/emergency",
                json={"lat": 40.4, "lng": -3.7, "descripcion": f"Emergencia {n}"},
                headers={"Authorization": f"Bearer {tokens[n % 2]}"},
                timeout=60,
            )
            results.append(response)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=raise_one, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors[:3]
    assert sorted(r.status_code for r in results) == [201] * 50, [(r.status_code, r.text[:200]) for r in results if r.status_code != 201][:5]
    codes = [r.json()["tarea"]["codigo"] for r in results]
    assert len(set(codes)) == 50 and not set(codes) & set(squatted)
    assert all(re.fullmatch(rf"EMG-{day}-\d{{4,7}}", c) for c in codes), codes
    assigned = [a["efectivo_id"] for r in results for a in r.json()["asignados"]]
    assert len(assigned) == len(set(assigned)) == 5  # five efectivos, each sent once
