"""Importing a GRUPO_GAD database through the real CLI: dry run, import, every row checked, re-runs, resume, login."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

from tests import grupo_gad_source as legacy
from tests.conftest import ROOT, LiveServer, recreate_database

SOURCE_DB = "grupo_gad_source"
ESTADOS = {"PROGRAMMED": "programada", "IN_PROGRESS": "en_curso", "COMPLETED": "finalizada", "CANCELLED": "cancelada", "PAUSED": "pausada"}
PRIORIDADES = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "URGENT": 4, "CRITICAL": 5}


@pytest.fixture(scope="module")
def source(pg_server: str) -> Iterator[tuple[str, legacy.Expected]]:
    """A second database on the test server in the old schema, filled once for the module."""
    url = recreate_database(pg_server, SOURCE_DB)
    legacy.create_schema(url)
    expected = legacy.fill(url)
    yield url, expected


def run_import(database_url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"GAD_ENV": "testing", "DATABASE_URL": database_url, "TEST_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "gad", "import-grupo-gad", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def query(url: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(r) for r in cur.fetchall()] if cur.description else []
    finally:
        conn.commit()
        conn.close()


def provenance(url: str, entidad: str) -> dict[int, int]:
    return {r["old_id"]: r["new_id"] for r in query(url, "SELECT old_id, new_id FROM procedencias WHERE sistema = 'grupo_gad' AND entidad = %s", (entidad,))}


def problem_lines(output: str) -> dict[tuple[str, int], str]:
    section = output.split("Rows that cannot be imported", 1)[1].split("Source rows changed", 1)[0]
    out = {}
    for line in section.splitlines()[1:]:
        if line.strip().startswith("("):
            continue
        head, _, reasons = line.strip().partition(": ")
        entidad, _, old_id = head.partition(" ")
        out[(entidad, int(old_id))] = reasons
    return out


def expected_problems(source_url: str, expected: legacy.Expected) -> dict[tuple[str, int], str]:
    """The deliberate bad rows plus the history rows of tareas that cannot be imported."""
    problems = dict(expected.problems)
    bad_tareas = {old_id for (entidad, old_id) in expected.problems if entidad == "tarea"}
    for row in query(source_url, "SELECT id, tarea_id FROM historial_estados"):
        if row["tarea_id"] in bad_tareas:
            problems[("historial", row["id"])] = f"tarea {row['tarea_id']}, which cannot be imported"
    return problems


def utc(naive: datetime | None) -> datetime | None:
    return None if naive is None else naive.replace(tzinfo=UTC)


def check_every_row(source_url: str, target_url: str, expected: legacy.Expected, problems: dict[tuple[str, int], str]) -> None:
    usuarios, efectivos, tareas = provenance(target_url, "usuario"), provenance(target_url, "efectivo"), provenance(target_url, "tarea")
    historial = provenance(target_url, "historial")
    gad_usuarios = {r["id"]: r for r in query(target_url, "SELECT * FROM usuarios")}
    for old in query(source_url, "SELECT *, nivel::text AS nivel FROM usuarios ORDER BY id"):
        if ("usuario", old["id"]) in problems:
            assert old["id"] not in usuarios
            continue
        # Into an empty GAD every row keeps its old id: a client of the old system still holding it reads the same record.
        assert usuarios[old["id"]] == old["id"]
        new = gad_usuarios[usuarios[old["id"]]]
        assert new["email"] == old["email"].lower()
        assert (new["dni"], new["nombre"], new["apellido"], new["telefono"], new["telegram_id"]) == (
            old["dni"],
            old["nombre"],
            old["apellido"],
            old["telefono"],
            old["telegram_id"],
        )
        assert new["nivel"] == int(old["nivel"][-1])
        assert new["password_hash"] == old["hashed_password"]
        assert str(new["uuid"]) == str(old["uuid"])
        assert new["verificado"] is old["verificado"]
        # Deleted, never verified or locked out for good: imported, but inactive (GAD lets only active usuarios in).
        blocked = old["bloqueado_hasta"] is not None
        assert new["activo"] is (old["deleted_at"] is None and old["verificado"] and not blocked)
        assert new["created_at"] == utc(old["created_at"]) and new["updated_at"] == utc(old["updated_at"])
        assert new["ultimo_acceso"] == old["ultimo_acceso"]
        assert new["intentos_fallidos"] == old["intentos_fallidos"]
        motivo = "borrado" if old["deleted_at"] else "sin_verificar" if not old["verificado"] else "bloqueado" if blocked else None
        assert new["extra"] == old["extra_data"] | {"importado_de": {"sistema": "grupo_gad", "id": old["id"], "inactivo_por": motivo}}
    assert len(usuarios) == len(gad_usuarios)

    gad_efectivos = {r["id"]: r for r in query(target_url, "SELECT * FROM efectivos")}
    working = {
        r["efectivo_id"]
        for r in query(
            target_url,
            "SELECT a.efectivo_id FROM asignaciones a JOIN tareas t ON t.id = a.tarea_id"
            " WHERE a.liberado_en IS NULL AND t.deleted_at IS NULL AND t.estado IN ('en_curso', 'pausada')",
        )
    }
    for old in query(
        source_url,
        "SELECT e.*, e.estado_disponibilidad::text AS disp, u.nombre || ' ' || u.apellido AS persona FROM efectivos e JOIN usuarios u ON u.id = e.usuario_id",
    ):
        if ("efectivo", old["id"]) in problems:
            assert old["id"] not in efectivos
            continue
        assert efectivos[old["id"]] == old["id"]
        new = gad_efectivos[efectivos[old["id"]]]
        assert (new["codigo_interno"], new["rango"], new["unidad"], new["especialidad"]) == (
            old["codigo_interno"],
            old["rango"],
            old["unidad"],
            old["especialidad"],
        )
        assert new["usuario_id"] == usuarios[old["usuario_id"]]
        assert new["nombre"] == old["persona"]
        # GAD's rule, whatever the old system left: working a running tarea is en_tarea, en_tarea without one is disponible.
        imported_as = {("disponible", True): "en_tarea", ("en_tarea", False): "disponible"}.get(
            (old["disp"].lower(), new["id"] in working), old["disp"].lower()
        )
        assert new["estado_disponibilidad"] == imported_as
        if imported_as == old["disp"].lower():
            assert new["estado_cambiado_en"] == old["ultima_actualizacion_estado"]
        assert new["activo"] is (old["deleted_at"] is None)
        assert str(new["uuid"]) == str(old["uuid"])
    assert len(efectivos) == len(gad_efectivos)

    gad_tareas = {r["id"]: r for r in query(target_url, "SELECT * FROM tareas")}
    asignaciones: dict[int, list[dict[str, Any]]] = {}
    for row in query(target_url, "SELECT * FROM asignaciones"):
        asignaciones.setdefault(row["tarea_id"], []).append(row)
    table_store: dict[int, set[int]] = {}
    for row in query(source_url, "SELECT tarea_id, efectivo_id FROM tarea_efectivos"):
        table_store.setdefault(row["tarea_id"], set()).add(row["efectivo_id"])
    import_history = {r["tarea_id"]: r for r in query(target_url, "SELECT * FROM historial_estados WHERE motivo LIKE 'Importada de GRUPO_GAD%%'")}
    for old in query(source_url, "SELECT *, estado::text AS estado, tipo::text AS tipo, prioridad::text AS prioridad FROM tareas ORDER BY id"):
        if ("tarea", old["id"]) in problems:
            assert old["id"] not in tareas
            continue
        assert tareas[old["id"]] == old["id"]
        new = gad_tareas[tareas[old["id"]]]
        assert (new["codigo"], new["titulo"], new["descripcion"]) == (old["codigo"], old["titulo"], old["descripcion"])
        assert new["estado"] == ESTADOS[old["estado"]] and new["tipo"] == old["tipo"].lower() and new["prioridad"] == PRIORIDADES[old["prioridad"]]
        for column in ("inicio_programado", "fin_programado", "inicio_real", "fin_real", "pausado_en"):
            assert new[column] == old[column], column
        assert new["tiempo_pausado_s"] == (int(old["tiempo_pausado"].total_seconds()) if old["tiempo_pausado"] else 0)
        assert new["ubicacion_lat"] == (float(old["ubicacion_lat"]) if old["ubicacion_lat"] is not None else None)
        assert new["ubicacion_lon"] == (float(old["ubicacion_lon"]) if old["ubicacion_lon"] is not None else None)
        assert new["delegado_usuario_id"] == usuarios[old["delegado_usuario_id"]]
        assert new["creado_por_usuario_id"] == usuarios[old["creado_por_usuario_id"]]
        assert new["notas"] == (json.dumps(old["notas"], ensure_ascii=False, sort_keys=True) if old["notas"] else None)
        assert new["deleted_at"] == utc(old["deleted_at"]) and new["created_at"] == utc(old["created_at"])
        # Reconciled assignments: the union of both stores.
        union = table_store.get(old["id"], set()) | set(old["efectivos_asignados"])
        got = asignaciones.get(new["id"], [])
        assert sorted(a["efectivo_id"] for a in got) == sorted(efectivos[e] for e in union)
        still_active = new["estado"] in ("programada", "en_curso", "pausada") and old["deleted_at"] is None
        assert all((a["liberado_en"] is None) is still_active for a in got)
        # A closed tarea is dated by its end as the old system knew it (the board lists the latest closed first).
        if new["estado"] in ("finalizada", "cancelada"):
            ended = next(old[c] if old[c].tzinfo else utc(old[c]) for c in ("fin_real", "deleted_at", "updated_at") if old[c] is not None)
            assert new["cerrada_en"] == max(ended, new["created_at"]) and all(a["liberado_en"] == new["cerrada_en"] for a in got)
        else:
            assert new["cerrada_en"] is None
        # Each books the tarea's window, as an assignment made in GAD does.
        assert all((a["periodo"].lower, a["periodo"].upper) == (new["inicio_programado"], new["fin_programado"]) for a in got)
        assert import_history[new["id"]]["estado_nuevo"] == new["estado"]
    assert len(tareas) == len(gad_tareas)

    for old in query(source_url, "SELECT *, estado_nuevo::text AS nuevo FROM historial_estados ORDER BY id"):
        if ("historial", old["id"]) in problems:
            assert old["id"] not in historial
            continue
        new = query(target_url, "SELECT * FROM historial_estados WHERE id = %s", (historial[old["id"]],))[0]
        assert new["tarea_id"] == tareas[old["tarea_id"]]
        assert new["estado_nuevo"] == ESTADOS[old["nuevo"]] and new["motivo"] == old["motivo"]
        assert new["created_at"] == utc(old["created_at"])


def counts(url: str) -> dict[str, int]:
    tables = ("usuarios", "efectivos", "tareas", "asignaciones", "historial_estados", "procedencias")
    return {t: query(url, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}


def test_import_dry_run_lists_every_bad_row_and_writes_nothing(source: tuple[str, legacy.Expected], database_url: str) -> None:
    source_url, expected = source
    result = run_import(database_url, source_url, "--dry-run", "--batch-size", "50")
    assert result.returncode == 0, result.stderr
    problems = expected_problems(source_url, expected)
    listed = problem_lines(result.stdout)
    assert set(listed) == set(problems), result.stdout
    for key, fragment in problems.items():
        assert fragment in listed[key], (key, listed[key])
    for tarea in expected.disagreements:
        assert f"tarea {tarea}: only in" in result.stdout
    assert "would import" in result.stdout and "dry run" in result.stdout
    assert "rows/s" in result.stderr and "s left" in result.stderr  # progress
    assert counts(database_url) == dict.fromkeys(counts(database_url), 0)
    assert query(database_url, "SELECT count(*) AS n FROM eventos")[0]["n"] == 0


def test_import_without_skip_invalid_stops_at_the_first_bad_batch(source: tuple[str, legacy.Expected], database_url: str) -> None:
    source_url, _ = source
    result = run_import(database_url, source_url, "--batch-size", "50")
    assert result.returncode == 1
    assert "STOPPED: usuario 2:" in result.stdout and "--skip-invalid" in result.stdout
    # The bad rows are in the first batch: nothing of it was committed; the run itself is on record.
    assert counts(database_url)["usuarios"] == 0
    assert [r["event_type"] for r in query(database_url, "SELECT event_type FROM eventos ORDER BY id")] == ["import_started", "import_finished"]


def test_import_brings_every_row_and_reruns_change_nothing(source: tuple[str, legacy.Expected], database_url: str) -> None:
    source_url, expected = source
    problems = expected_problems(source_url, expected)
    dry = run_import(database_url, source_url, "--dry-run", "--batch-size", "50")
    result = run_import(database_url, source_url, "--skip-invalid", "--batch-size", "50")
    assert result.returncode == 0, result.stderr + result.stdout
    check_every_row(source_url, database_url, expected, problems)
    assert set(problem_lines(result.stdout)) == set(problems)
    # The dry run announced exactly these figures.
    figures = [line.replace("would import", "imported") for line in dry.stdout.splitlines() if "source" in line and "·" in line]
    assert figures == [line for line in result.stdout.splitlines() if "source" in line and "·" in line]
    assert (
        f"usuarios imported inactive: {len(expected.deleted_usuarios)} deleted in GRUPO_GAD, {len(expected.unverified_usuarios)} never verified,"
        f" {len(expected.blocked_usuarios)} blocked until a date still to come" in result.stdout
    )
    assert "Ids GAD already used, given new ones (0;" in result.stdout
    settled = result.stdout.split("Availability set by GAD's rule", 1)[1].split("Rows that cannot", 1)[0]
    assert "disponible -> en_tarea" in settled  # the other way round: test_near_duplicates_…

    # The event log: where the data came from, one event per batch, nothing per row; the chain verifies.
    eventos = query(database_url, "SELECT event_type, topic, payload FROM eventos ORDER BY id")
    assert eventos[0]["event_type"] == "import_started" and eventos[0]["payload"]["database"] == source_url.rpartition("/")[2]
    assert eventos[0]["payload"]["revision"] == legacy.REVISION
    assert eventos[-1]["event_type"] == "import_finished"
    batches = [e for e in eventos if e["event_type"] == "import_batch"]
    assert len(eventos) == len(batches) + 2 and all(e["topic"] == "sistema" for e in eventos)
    assert sum(e["payload"]["rows"] for e in batches) == counts(database_url)["procedencias"]
    from gad.schemas.events import EVENT_PAYLOADS

    for evento in eventos:  # each payload is exactly its typed, documented shape
        assert EVENT_PAYLOADS[evento["event_type"]].model_validate(evento["payload"]).to_json() == evento["payload"]
    verify = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "gad", "audit", "verify"],
        cwd=ROOT,
        env=os.environ | {"GAD_ENV": "testing", "TEST_DATABASE_URL": database_url, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr

    # Re-running duplicates nothing and reports every row as already imported.
    before = counts(database_url)
    again = run_import(database_url, source_url, "--skip-invalid", "--batch-size", "50")
    assert again.returncode == 0
    assert counts(database_url) == before
    assert "changed since import     0" in again.stdout
    assert " imported       0 " in again.stdout

    # A source row edited after the import is reported, never overwritten.
    titulo = query(source_url, "SELECT titulo FROM tareas WHERE id = 50")[0]["titulo"]
    nombre = query(source_url, "SELECT nombre FROM usuarios WHERE id = 9")[0]["nombre"]
    try:
        query(source_url, "UPDATE tareas SET titulo = 'Titulo cambiado después' WHERE id = 50")
        query(source_url, "UPDATE usuarios SET nombre = 'Otra' WHERE id = 9")
        changed = run_import(database_url, source_url, "--skip-invalid")
    finally:
        query(source_url, "UPDATE tareas SET titulo = %s WHERE id = 50", (titulo,))
        query(source_url, "UPDATE usuarios SET nombre = %s WHERE id = 9", (nombre,))
    section = changed.stdout.split("not overwritten (3):", 1)[1].split("Assignment stores", 1)[0]
    # Efectivo 4 is usuario 9's: its name comes from that row, so it changed too.
    assert section.split() == ["usuario", "9", "efectivo", "4", "tarea", "50"]
    assert counts(database_url) == before
    assert query(database_url, "SELECT titulo FROM tareas WHERE codigo = 'GAD-2024-00050'")[0]["titulo"] == titulo


def test_import_interrupted_resumes_without_duplicates(source: tuple[str, legacy.Expected], database_url: str, tmp_path: Any) -> None:
    source_url, expected = source
    env = os.environ | {"GAD_ENV": "testing", "DATABASE_URL": database_url, "TEST_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "gad", "import-grupo-gad", source_url, "--skip-invalid", "--batch-size", "1"]
    with (tmp_path / "stderr").open("w") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        # Wait until some tarea batches are committed, then hold the event counter's row lock: the import
        # blocks at its next commit, so the signal lands mid-run however slow this machine is.
        deadline = time.monotonic() + 300
        while not provenance(database_url, "tarea"):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        blocker = psycopg2.connect(database_url)
        with blocker.cursor() as cur:
            cur.execute("SELECT 1 FROM eventos_contador WHERE id = 1 FOR UPDATE")
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        blocker.rollback()
        blocker.close()
        out, _ = process.communicate(timeout=120)
    assert process.returncode == 130, out
    assert "INTERRUPTED" in out
    partial = provenance(database_url, "tarea")
    assert 0 < len(partial) < 300
    # Committed batches are whole: every recorded tarea exists, with its import history row.
    assert query(database_url, "SELECT count(*) AS n FROM tareas")[0]["n"] == len(partial)
    assert query(database_url, "SELECT count(*) AS n FROM historial_estados WHERE motivo LIKE 'Importada%%'")[0]["n"] == len(partial)
    assert provenance(database_url, "historial") == {}

    result = run_import(database_url, source_url, "--skip-invalid", "--batch-size", "50")
    assert result.returncode == 0, result.stderr
    check_every_row(source_url, database_url, expected, expected_problems(source_url, expected))
    assert query(database_url, "SELECT count(*) AS n FROM historial_estados WHERE motivo LIKE 'Importada%%'")[0]["n"] == len(provenance(database_url, "tarea"))


def test_import_refuses_a_database_that_is_not_grupo_gad_or_at_another_revision(source: tuple[str, legacy.Expected], database_url: str) -> None:
    source_url, _ = source
    result = run_import(database_url, database_url, "--dry-run")
    assert result.returncode == 1
    assert "refused: not a GRUPO_GAD database: table(s) tarea_efectivos missing" in result.stderr
    query(source_url, "UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")
    try:
        result = run_import(database_url, source_url)
    finally:
        query(source_url, "UPDATE alembic_version SET version_num = %s", (legacy.REVISION,))
    assert result.returncode == 1
    assert "unknown migration revision a1b2c3d4e5f6" in result.stderr
    assert counts(database_url)["usuarios"] == 0
    # The source was only read: a write through the importer's own session settings is refused by PostgreSQL.
    from gad.importers.grupo_gad import open_source

    conn = open_source(source_url)
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), conn.cursor() as cur:
        cur.execute("DELETE FROM historial_estados")
    conn.close()


def test_imported_usuario_logs_in_with_old_password_then_has_argon2id(source: tuple[str, legacy.Expected], database_url: str, live_server: LiveServer) -> None:
    source_url, expected = source
    assert run_import(database_url, source_url, "--skip-invalid").returncode == 0
    email = legacy.LOGIN_EMAIL.lower()
    stored = query(database_url, "SELECT password_hash FROM usuarios WHERE email = %s", (email,))[0]["password_hash"]
    assert stored.startswith("$2b$12$")

    wrong = live_server.post("/api/v1/auth/login", data={"username": legacy.LOGIN_EMAIL, "password": "not-the-password"})
    assert wrong.status_code == 401
    assert query(database_url, "SELECT password_hash FROM usuarios WHERE email = %s", (email,))[0]["password_hash"] == stored

    # The old clients' form login, e-mail typed as the old system stored it.
    ok = live_server.post("/api/v1/auth/login", data={"username": legacy.LOGIN_EMAIL, "password": legacy.LOGIN_PASSWORD})
    assert ok.status_code == 200, ok.text
    rehashed = query(database_url, "SELECT password_hash FROM usuarios WHERE email = %s", (email,))[0]["password_hash"]
    assert rehashed.startswith("$argon2id$")
    headers = {"Authorization": f"Bearer {ok.json()['access_token']}"}
    me = live_server.get("/api/v1/users/me", headers=headers)
    assert me.status_code == 200 and me.json()["email"] == email and me.json()["id"] == expected.login_usuario
    # An old client's ids still name the same records, and a tarea's history reads oldest first, the import's row last.
    tarea = live_server.get("/api/v1/tasks/2", headers=headers)
    assert tarea.status_code == 200 and tarea.json()["codigo"] == query(source_url, "SELECT codigo FROM tareas WHERE id = 2")[0]["codigo"]
    historial = live_server.get("/api/v1/tasks/2/historial", headers=headers).json()
    assert [h["motivo"] for h in historial] == ["Tarea creada", "Cambio de estado", "Importada de GRUPO_GAD (tarea 2)"]
    # The same password keeps working against the new hash.
    assert live_server.post("/api/v1/auth/login", json={"email": email, "password": legacy.LOGIN_PASSWORD}).status_code == 200

    # A usuario the old system kept unverified is imported inactive: the right password does not let them in.
    unverified = next(iter(expected.unverified_usuarios))
    row = query(
        database_url,
        "SELECT u.email, u.password_hash FROM usuarios u JOIN procedencias p ON p.new_id = u.id AND p.entidad = 'usuario' WHERE p.old_id = %s",
        (unverified,),
    )[0]
    refused = live_server.post("/api/v1/auth/login", data={"username": row["email"], "password": legacy.OTHER_PASSWORD})
    assert refused.status_code == 401
    # So is one the old system had locked out until a date still to come.
    blocked = query(database_url, "SELECT email FROM usuarios WHERE id = %s", (next(iter(expected.blocked_usuarios)),))[0]["email"]
    assert live_server.post("/api/v1/auth/login", data={"username": blocked, "password": legacy.OTHER_PASSWORD}).status_code == 401
    assert query(database_url, "SELECT password_hash FROM usuarios WHERE email = %s", (row["email"],))[0]["password_hash"] == row["password_hash"]


def test_bcrypt_hashes_verify_on_the_first_72_bytes_and_always_need_rehash(app: Any) -> None:
    import bcrypt

    from gad.services import auth

    long_password = "á" * 50  # 100 bytes in UTF-8: bcrypt 5 refuses it, the old system used its first 72
    old_hash = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(4)).decode()
    with app.app_context():
        assert auth.verify_password(old_hash, long_password)
        assert not auth.verify_password(old_hash, "á" * 35)
        assert not auth.verify_password("$2b$04$not-a-valid-bcrypt-hash", long_password)
        assert auth.needs_rehash(old_hash)
        assert not auth.needs_rehash(auth.hash_password("una-clave-nueva-larga"))


def test_near_duplicates_are_reported_and_only_ids_gad_already_has_are_renumbered(pg_server: str, database_url: str) -> None:
    """E-mails and DNIs unique as GRUPO_GAD stored them but not once trimmed (and e-mails lower-cased) made the import
    fail with a traceback, dry run included; and every row took a new id, so a client holding an old one read
    another record. Such rows are now listed as any bad row is, and every row keeps its old id unless GAD has it."""
    source_url = recreate_database(pg_server, "grupo_gad_edges")
    legacy.create_schema(source_url)
    hashed = legacy.bcrypt_hash(legacy.OTHER_PASSWORD, 4)
    people = [
        (1, "jefe@grupo-gad.es", "40000001A"),
        (2, " pedro@grupo-gad.es", "40000002B"),
        (3, "Pedro@grupo-gad.es", "40000003C"),
        (4, "ana@grupo-gad.es", "40000004D "),
        (5, "luis@grupo-gad.es", "40000004D"),
        (6, "eva@grupo-gad.es", "40000006F"),
        (7, "rosa@grupo-gad.es", "40000007G"),
    ]
    created = datetime(2024, 5, 1, 9, 0)
    conn = psycopg2.connect(source_url)
    with conn, conn.cursor() as cur:
        for old_id, email, dni in people:
            cur.execute(
                "INSERT INTO usuarios (id, uuid, dni, nombre, apellido, email, nivel, hashed_password, verificado, intentos_fallidos, extra_data,"
                " created_at, updated_at) VALUES (%s, gen_random_uuid(), %s, 'Nombre', 'Apellido', %s, 'LEVEL_1', %s, true, 0, '{}', %s, %s)",
                (old_id, dni, email, hashed, created, created),
            )
        # Efectivo 3 was left en_tarea with no tarea at all.
        for old_id, usuario_id, codigo, estado in ((1, 6, "EF-0001 ", "DISPONIBLE"), (2, 7, "EF-0001", "DISPONIBLE"), (3, 1, "EF-0003", "EN_TAREA")):
            cur.execute(
                "INSERT INTO efectivos (id, uuid, usuario_id, codigo_interno, estado_disponibilidad, ultima_actualizacion_estado, created_at, updated_at)"
                " VALUES (%s, gen_random_uuid(), %s, %s, %s, now(), %s, %s)",
                (old_id, usuario_id, codigo, estado, created, created),
            )
    conn.close()
    # GAD already has a usuario 1 (an administrador created before the import).
    env = os.environ | {"GAD_ENV": "testing", "DATABASE_URL": database_url, "TEST_DATABASE_URL": database_url, "GAD_ADMIN_PASSWORD": "a-long-password-1"}
    admin = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "gad", "create-admin", "admin@gad.test"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert admin.returncode == 0, admin.stderr
    admin_id = query(database_url, "SELECT id FROM usuarios WHERE email = 'admin@gad.test'")[0]["id"]
    query(database_url, "UPDATE usuarios SET id = 1 WHERE id = %s", (admin_id,))

    dry = run_import(database_url, source_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    listed = problem_lines(dry.stdout)
    assert set(listed) == {("usuario", 2), ("usuario", 3), ("usuario", 4), ("usuario", 5), ("efectivo", 1), ("efectivo", 2)}, dry.stdout
    assert "differs only in case, surrounding spaces or character form from usuario 3 ('Pedro@grupo-gad.es')" in listed[("usuario", 2)]
    assert "dni '40000004D ' differs only in case, spaces, separators or character form from usuario 5" in listed[("usuario", 4)]
    assert "codigo_interno 'EF-0001' differs only in surrounding spaces from efectivo 1" in listed[("efectivo", 2)]

    result = run_import(database_url, source_url, "--skip-invalid")
    assert result.returncode == 0, result.stderr + result.stdout
    usuarios, efectivos = provenance(database_url, "usuario"), provenance(database_url, "efectivo")
    assert usuarios[6] == 6 and usuarios[7] == 7 and efectivos == {3: 3}
    # Old usuario 1's id was GAD's administrador's: it got one past every old id, and the report says which.
    assert usuarios[1] > 7 and f"usuario 1 -> {usuarios[1]}" in result.stdout
    assert query(database_url, "SELECT email FROM usuarios WHERE id = 1")[0]["email"] == "admin@gad.test"
    # GAD's availability rule, which the old system did not keep: en_tarea with no running tarea is disponible.
    assert "efectivo 3 (EF-0003): en_tarea -> disponible" in result.stdout
    assert query(database_url, "SELECT estado_disponibilidad FROM efectivos WHERE id = 3")[0]["estado_disponibilidad"] == "disponible"
    # What GAD creates next takes none of the ids kept.
    assert query(database_url, "SELECT nextval(pg_get_serial_sequence('usuarios', 'id')) AS n")[0]["n"] > usuarios[1]
