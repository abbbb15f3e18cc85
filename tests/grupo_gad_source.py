"""A GRUPO_GAD database in its own schema (PREDECESSOR.md, revision 8a888f8e3bc5), filled with realistic rows.

Used by the importer's tests (hundreds of rows with every kind of bad row, built in Python so each can be
named) and by ``bench.import_bench`` (100,000 tareas, built in SQL).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import bcrypt
import psycopg2
import psycopg2.extras

REVISION = "8a888f8e3bc5"

# The schema exactly as its migrations leave it: upper-case enum names, `timestamp without time zone`
# for created/updated/deleted (holding UTC), both assignment stores, no foreign key on the array.
SCHEMA = """
CREATE TYPE nivel_usuario AS ENUM ('LEVEL_1', 'LEVEL_2', 'LEVEL_3');
CREATE TYPE estado_tarea AS ENUM ('PROGRAMMED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED', 'PAUSED');
CREATE TYPE prioridad_tarea AS ENUM ('LOW', 'MEDIUM', 'HIGH', 'URGENT', 'CRITICAL');
CREATE TYPE tipo_tarea AS ENUM ('PATRULLAJE', 'INVESTIGACION', 'VIGILANCIA', 'INTERVENCION', 'ADMINISTRATIVA', 'ENTRENAMIENTO');
CREATE TYPE estado_disponibilidad AS ENUM ('DISPONIBLE', 'EN_TAREA', 'FUERA_SERVICIO', 'NO_DISPONIBLE');
CREATE TYPE audit_event_type AS ENUM ('login', 'logout', 'login_failed', 'permission_denied', 'create', 'read', 'update', 'delete',
    'task_assigned', 'task_status_changed', 'emergency_created', 'user_created', 'user_disabled', 'role_changed');
CREATE TYPE audit_severity AS ENUM ('low', 'medium', 'high', 'critical');

CREATE TABLE alembic_version (version_num varchar(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));

CREATE TABLE usuarios (
    id serial PRIMARY KEY, uuid uuid NOT NULL UNIQUE, dni varchar(20) NOT NULL UNIQUE, nombre varchar(100) NOT NULL,
    apellido varchar(100) NOT NULL, email varchar NOT NULL UNIQUE, telefono varchar(20), telegram_id bigint UNIQUE,
    nivel nivel_usuario NOT NULL, hashed_password varchar(255) NOT NULL, verificado boolean NOT NULL,
    ultimo_acceso timestamptz, intentos_fallidos integer NOT NULL, bloqueado_hasta timestamptz, extra_data jsonb NOT NULL,
    created_at timestamp NOT NULL, updated_at timestamp NOT NULL, deleted_at timestamp
);
CREATE TABLE efectivos (
    id serial PRIMARY KEY, uuid uuid NOT NULL UNIQUE, usuario_id integer NOT NULL UNIQUE REFERENCES usuarios (id),
    codigo_interno varchar(50) NOT NULL UNIQUE, rango varchar(50), unidad varchar(100), especialidad varchar(100),
    estado_disponibilidad estado_disponibilidad NOT NULL, ultima_actualizacion_estado timestamptz NOT NULL, metadata json,
    created_at timestamp NOT NULL, updated_at timestamp NOT NULL, deleted_at timestamp
);
CREATE TABLE tareas (
    id serial PRIMARY KEY, uuid uuid NOT NULL UNIQUE, codigo varchar(50) NOT NULL UNIQUE, titulo varchar(200) NOT NULL,
    descripcion text, tipo tipo_tarea NOT NULL, prioridad prioridad_tarea NOT NULL, inicio_programado timestamptz NOT NULL,
    fin_programado timestamptz, inicio_real timestamptz, fin_real timestamptz, tiempo_pausado interval, pausado_en timestamptz,
    estado estado_tarea NOT NULL, delegado_usuario_id integer NOT NULL REFERENCES usuarios (id),
    creado_por_usuario_id integer NOT NULL REFERENCES usuarios (id), ubicacion_lat numeric(10, 8), ubicacion_lon numeric(11, 8),
    ubicacion_descripcion text, efectivos_asignados integer[] NOT NULL, duracion_real_horas numeric, notas jsonb NOT NULL,
    extra_data jsonb NOT NULL, created_at timestamp NOT NULL, updated_at timestamp NOT NULL, deleted_at timestamp,
    CONSTRAINT check_fin_after_inicio CHECK (fin_programado > inicio_programado),
    CONSTRAINT check_real_fin_after_inicio CHECK (fin_real >= inicio_real)
);
CREATE TABLE tarea_efectivos (
    tarea_id integer NOT NULL REFERENCES tareas (id), efectivo_id integer NOT NULL REFERENCES efectivos (id),
    PRIMARY KEY (tarea_id, efectivo_id)
);
CREATE TABLE historial_estados (
    id serial PRIMARY KEY, tarea_id integer NOT NULL REFERENCES tareas (id), estado_anterior estado_tarea, estado_nuevo estado_tarea NOT NULL,
    usuario_id integer REFERENCES usuarios (id), motivo text, extra_data jsonb NOT NULL,
    created_at timestamp NOT NULL, updated_at timestamp NOT NULL, deleted_at timestamp
);
CREATE TABLE metricas_tareas (
    id serial PRIMARY KEY, tipo_tarea tipo_tarea NOT NULL, prioridad prioridad_tarea NOT NULL, total_tareas integer NOT NULL,
    total_horas real NOT NULL, tiempo_promedio_horas real, tasa_exito numeric(5, 2), duracion_p25 real, duracion_p50 real,
    duracion_p75 real, duracion_min real, duracion_max real, ultima_actualizacion timestamp NOT NULL,
    created_at timestamp NOT NULL, updated_at timestamp NOT NULL, deleted_at timestamp
);
CREATE TABLE audit_logs (
    id serial PRIMARY KEY, event_id varchar(36) NOT NULL UNIQUE, event_type audit_event_type NOT NULL, severity audit_severity NOT NULL,
    "timestamp" timestamp NOT NULL, user_id integer, telegram_id integer, session_id varchar, endpoint varchar, http_method varchar,
    user_agent varchar, ip_address inet, referer varchar, resource_type varchar, resource_id varchar, action_description text NOT NULL,
    old_values json, new_values json, event_metadata json, success boolean NOT NULL, error_message varchar, response_status integer,
    compliance_tags varchar, retention_until timestamp, created_at timestamp NOT NULL, updated_at timestamp NOT NULL, deleted_at timestamp
);
CREATE TABLE audit_sessions (
    id serial PRIMARY KEY, session_id varchar NOT NULL, user_id integer, started_at timestamp NOT NULL, ended_at timestamp,
    created_at timestamp NOT NULL, updated_at timestamp NOT NULL, deleted_at timestamp
);
"""

LOGIN_EMAIL = "Jefa.Operaciones@grupo-gad.es"
LOGIN_PASSWORD = "clave-de-2019-vieja"
OTHER_PASSWORD = "otra-clave-antigua-1"
ESTADOS = ["PROGRAMMED", "IN_PROGRESS", "PAUSED", "COMPLETED", "CANCELLED"]
TIPOS = ["PATRULLAJE", "INVESTIGACION", "VIGILANCIA", "INTERVENCION", "ADMINISTRATIVA", "ENTRENAMIENTO"]
PRIORIDADES = ["LOW", "MEDIUM", "HIGH", "URGENT", "CRITICAL"]


@lru_cache(maxsize=2)
def bcrypt_hash(password: str, rounds: int) -> str:
    # Cost 12 is what the old system used (~0.2 s): one such hash for the login test, cheaper ones for the rest.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


@dataclass
class Expected:
    """What the fill deliberately made wrong, keyed by (entidad, old id) -> a fragment of the reason."""

    problems: dict[tuple[str, int], str] = field(default_factory=dict)
    disagreements: set[int] = field(default_factory=set)
    deleted_usuarios: set[int] = field(default_factory=set)
    unverified_usuarios: set[int] = field(default_factory=set)
    blocked_usuarios: set[int] = field(default_factory=set)
    login_usuario: int = 1


def create_schema(url: str, timezone: str = "America/Havana") -> None:
    """Create the old schema; the database's TimeZone is not UTC, so naive values must not be read as local."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"ALTER DATABASE {conn.info.dbname} SET timezone TO '{timezone}'")
        cur.execute(SCHEMA)
        cur.execute("INSERT INTO alembic_version VALUES (%s)", (REVISION,))
    conn.close()


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def fill(url: str, *, usuarios: int = 120, efectivos: int = 80, tareas: int = 320, seed: int = 16) -> Expected:
    """Realistic rows plus one of each kind of bad row; returns what an import must report about them."""
    rng = random.Random(seed)
    expected = Expected()
    base = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    cheap = bcrypt_hash(OTHER_PASSWORD, 4)
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        rows: list[tuple[Any, ...]] = []
        for n in range(1, usuarios + 1):
            created = base + timedelta(days=n % 200, minutes=n)
            email = f"agente{n}@grupo-gad.es"
            dni = f"{40000000 + n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"
            verificado, deleted, nivel, password, blocked_until = True, None, "LEVEL_1", cheap, None
            if n == 1:
                email, nivel, password = LOGIN_EMAIL, "LEVEL_3", bcrypt_hash(LOGIN_PASSWORD, 12)
            elif n == 2:
                email = "Ana.Lopez@grupo-gad.es"
                expected.problems[("usuario", 2)] = "differs only in case"
            elif n == 3:
                email = "ana.lopez@grupo-gad.es"
                expected.problems[("usuario", 3)] = "differs only in case"
            elif n == 4:
                deleted = _naive(created + timedelta(days=30))
                expected.deleted_usuarios.add(n)
            elif n == 5:
                verificado = False
                expected.unverified_usuarios.add(n)
            elif n == 6:
                dni = "123"
                expected.problems[("usuario", 6)] = "dni"
            elif n in (7, 8):
                nivel = "LEVEL_2"
            elif n == 104:  # locked out for good by the old system: not let in until an administrador checks
                blocked_until = datetime(2099, 1, 1, tzinfo=UTC)
                expected.blocked_usuarios.add(n)
            rows.append(
                (
                    n,
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    dni,
                    rng.choice(["Ana", "Luis", "Marta", "Jorge", "Lucía", "Pedro", "Elena", "Raúl"]),
                    rng.choice(["García", "Pérez", "Sánchez", "Martín", "Gómez", "Ruiz"]),
                    email,
                    f"+34 6{n:08d}",
                    700000000 + n if n % 3 else None,
                    nivel,
                    password,
                    verificado,
                    created + timedelta(days=90) if n % 4 == 0 else None,
                    n % 3,
                    blocked_until,
                    json.dumps({"turno": "noche" if n % 2 else "día"}),
                    _naive(created),
                    _naive(created + timedelta(days=1)),
                    deleted,
                )
            )
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO usuarios (id, uuid, dni, nombre, apellido, email, telefono, telegram_id, nivel, hashed_password, verificado,"
            " ultimo_acceso, intentos_fallidos, bloqueado_hasta, extra_data, created_at, updated_at, deleted_at) VALUES %s",
            rows,
        )
        # Efectivos are usuarios 6.. (usuario 6 cannot be imported, so neither can its efectivo).
        rows = []
        efectivo_usuarios = list(range(6, 6 + efectivos))
        for n, usuario_id in enumerate(efectivo_usuarios, start=1):
            codigo = f"EF-{n:04d}"
            if n == 1:
                expected.problems[("efectivo", 1)] = "usuario 6, which cannot be imported"
            if n == 2:
                codigo = "E2"
                expected.problems[("efectivo", 2)] = "codigo_interno"
            disponibilidad = rng.choice(["DISPONIBLE", "FUERA_SERVICIO", "NO_DISPONIBLE"])
            if n % 17 == 0:  # as the old system left it, whether or not the efectivo works a running tarea
                disponibilidad = "EN_TAREA"
            rows.append(
                (
                    n,
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    usuario_id,
                    codigo,
                    rng.choice(["Cabo", "Sargento", "Oficial"]),
                    f"Móvil {101 + n % 4}",
                    rng.choice(["patrulla", "investigación", "tráfico", None]),
                    disponibilidad,
                    base + timedelta(hours=n),
                    json.dumps({"vehiculo": f"V-{n}"}) if n % 2 else None,
                    _naive(base),
                    _naive(base + timedelta(hours=n)),
                    _naive(base + timedelta(days=3)) if n == efectivos else None,
                )
            )
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO efectivos (id, uuid, usuario_id, codigo_interno, rango, unidad, especialidad, estado_disponibilidad,"
            " ultima_actualizacion_estado, metadata, created_at, updated_at, deleted_at) VALUES %s",
            rows,
        )
        good_efectivos = list(range(3, efectivos + 1))
        free = list(good_efectivos)  # efectivos not yet working an active tarea
        table_of_21: list[int] = []
        inicio_of_21 = base
        tarea_rows, table_rows, history = [], [], []
        for n in range(1, tareas + 1):
            estado = ESTADOS[n % 5]
            inicio = base + timedelta(days=n % 300, hours=n % 24)
            fin = inicio + timedelta(hours=4)
            real_start = inicio + timedelta(minutes=10) if estado in ("IN_PROGRESS", "PAUSED", "COMPLETED") else None
            real_end = inicio + timedelta(hours=3) if estado == "COMPLETED" else None
            pausado_en = real_start + timedelta(hours=1) if estado == "PAUSED" and real_start else None
            paused = timedelta(minutes=15) if estado in ("PAUSED", "COMPLETED") else None
            codigo = f"GAD-{2024 + n % 2}-{n:05d}"
            delegado = rng.choice([7, 8, 1])
            lat: float | None = round(40.3 + rng.random() / 5, 6)
            lon: float | None = round(-3.8 + rng.random() / 5, 6)
            if n % 7 == 0:
                lat = lon = None
            active = estado in ("PROGRAMMED", "IN_PROGRESS", "PAUSED")
            team_size = rng.choice([0, 1, 2])
            if active:
                team = [free.pop() for _ in range(min(team_size, len(free)))]
            else:
                team = rng.sample(good_efectivos, team_size)
            array, table = list(team), list(team)
            deleted = None
            # The deliberately bad rows (one of each kind) and the stores' disagreements.
            if n == 10:
                codigo = "patrulla-centro"
                expected.problems[("tarea", n)] = "codigo"
            elif n == 11:
                codigo = "PATRULLA-NOCTURNA-CENTRO-NORTE"
                expected.problems[("tarea", n)] = "codigo"
            elif n == 13:  # COMPLETED with no real start: the old CHECK lets NULL through
                real_start = None
                expected.problems[("tarea", n)] = "fin_real is set but inicio_real is not"
            elif n == 14:
                lat, lon = 40.4, 200.5
                expected.problems[("tarea", n)] = "ubicacion_lng"
            elif n == 15:
                delegado = 6
                expected.problems[("tarea", n)] = "usuario 6, which cannot be imported"
            elif n == 16:
                array = [*array, 99999]
                expected.problems[("tarea", n)] = "efectivo 99999, which does not exist in the source"
            elif n == 18:  # COMPLETED in the future
                real_start = datetime.now(UTC) + timedelta(days=30)
                real_end = real_start + timedelta(hours=1)
                expected.problems[("tarea", n)] = "in the future"
            elif n == 22:  # PAUSED, and books an efectivo that tarea 21 (IN_PROGRESS) holds for an overlapping window
                shared = table_of_21[0]
                array, table = [*array, shared], [*table, shared]
                inicio, fin = inicio_of_21 + timedelta(hours=1), inicio_of_21 + timedelta(hours=5)
                real_start = inicio + timedelta(minutes=10)
                pausado_en = real_start + timedelta(hours=1)
                expected.problems[("tarea", n)] = "already booked by GRUPO_GAD tarea 21"
            elif n == 30:
                deleted = _naive(inicio + timedelta(days=1))
            if n in (40, 41, 42, 43) and team:
                # The two stores disagree: the table lost one, or the array did.
                if n % 2:
                    table = table[1:]
                else:
                    array = array[1:]
                expected.disagreements.add(n)
            if n in (44, 45) and active is False:
                extra = rng.choice(good_efectivos)
                if extra not in array:
                    array = [*array, extra]
                    expected.disagreements.add(n)
            if n == 21:
                inicio_of_21 = inicio
                if not table:
                    member = free.pop()
                    array, table = [member], [member]
                table_of_21 = list(table)
            tarea_rows.append(
                (
                    n,
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    codigo,
                    f"{rng.choice(['Patrullaje', 'Vigilancia', 'Control', 'Investigación'])} sector {n % 12 + 1} turno {n}",
                    "Descripción de la tarea" if n % 3 else None,
                    TIPOS[n % 6],
                    PRIORIDADES[n % 5],
                    inicio,
                    fin,
                    real_start,
                    real_end,
                    paused,
                    pausado_en,
                    estado,
                    delegado,
                    1 if n % 2 else 7,
                    lat,
                    lon,
                    f"Calle {n}" if lat is not None else None,
                    array,
                    3 if estado == "COMPLETED" else None,
                    json.dumps([{"texto": f"nota {n}", "autor": 1}] if n % 4 == 0 else []),
                    json.dumps({"origen": "api"}),
                    _naive(inicio - timedelta(days=1)),
                    _naive(inicio + timedelta(hours=5)),
                    deleted,
                )
            )
            table_rows.extend((n, e) for e in table)
            if n % 2 == 0:
                history.append((n, None, "PROGRAMMED", 1, "Tarea creada", _naive(inicio - timedelta(days=1))))
                if estado != "PROGRAMMED":
                    history.append((n, "PROGRAMMED", estado, delegado, "Cambio de estado", _naive(inicio + timedelta(minutes=10))))
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO tareas (id, uuid, codigo, titulo, descripcion, tipo, prioridad, inicio_programado, fin_programado, inicio_real,"
            " fin_real, tiempo_pausado, pausado_en, estado, delegado_usuario_id, creado_por_usuario_id, ubicacion_lat, ubicacion_lon,"
            " ubicacion_descripcion, efectivos_asignados, duracion_real_horas, notas, extra_data, created_at, updated_at, deleted_at) VALUES %s",
            tarea_rows,
        )
        psycopg2.extras.execute_values(cur, "INSERT INTO tarea_efectivos (tarea_id, efectivo_id) VALUES %s", table_rows)
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO historial_estados (tarea_id, estado_anterior, estado_nuevo, usuario_id, motivo, extra_data, created_at, updated_at)"
            " SELECT v.t, v.a::estado_tarea, v.n::estado_tarea, v.u, v.m, '{}'::jsonb, v.c, v.c FROM (VALUES %s) AS v (t, a, n, u, m, c)",
            history,
            template="(%s, %s, %s, %s, %s, %s::timestamp)",
        )
        for seq in ("usuarios_id_seq", "efectivos_id_seq", "tareas_id_seq"):
            table = seq.removesuffix("_id_seq")
            cur.execute(f"SELECT setval('{seq}', (SELECT max(id) FROM {table}))")
    conn.close()
    # History rows of tareas that cannot be imported cannot be imported either.
    return expected


def fill_bulk(url: str, *, tareas: int, usuarios: int = 500, efectivos: int = 400) -> None:
    """Many clean rows, generated inside PostgreSQL (for the import benchmark)."""
    password = bcrypt_hash(OTHER_PASSWORD, 4)
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO usuarios (uuid, dni, nombre, apellido, email, nivel, hashed_password, verificado, intentos_fallidos, extra_data,"
            " created_at, updated_at) SELECT gen_random_uuid(), (40000000 + n)::text || 'B', 'Agente', 'Bench', 'agente' || n || '@bench.es',"
            " 'LEVEL_1', %s, true, 0, '{}', now()::timestamp, now()::timestamp FROM generate_series(1, %s) AS n",
            (password, usuarios),
        )
        cur.execute(
            "INSERT INTO efectivos (uuid, usuario_id, codigo_interno, unidad, estado_disponibilidad, ultima_actualizacion_estado,"
            " created_at, updated_at) SELECT gen_random_uuid(), n, 'EF-' || n, 'Móvil 101', 'DISPONIBLE', now(), now()::timestamp,"
            " now()::timestamp FROM generate_series(1, %s) AS n",
            (efectivos,),
        )
        # Finished tareas (each with two efectivos in both stores and two history rows).
        cur.execute(
            "INSERT INTO tareas (uuid, codigo, titulo, descripcion, tipo, prioridad, inicio_programado, fin_programado, inicio_real, fin_real,"
            " tiempo_pausado, estado, delegado_usuario_id, creado_por_usuario_id, ubicacion_lat, ubicacion_lon, efectivos_asignados, notas,"
            " extra_data, created_at, updated_at)"
            " SELECT gen_random_uuid(), 'B-' || n, 'Patrullaje de prueba ' || n, 'Descripción', 'PATRULLAJE', 'MEDIUM',"
            " now() - interval '400 days' + n * interval '5 minutes', now() - interval '400 days' + n * interval '5 minutes' + interval '4 hours',"
            " now() - interval '400 days' + n * interval '5 minutes', now() - interval '400 days' + n * interval '5 minutes' + interval '3 hours',"
            " interval '10 minutes', 'COMPLETED', 1 + n %% %s, 1, 40.4, -3.7, ARRAY[1 + n %% %s, 1 + (n + 1) %% %s], '[]', '{}',"
            " now()::timestamp, now()::timestamp FROM generate_series(1, %s) AS n",
            (usuarios, efectivos, efectivos, tareas),
        )
        cur.execute("INSERT INTO tarea_efectivos SELECT id, e FROM tareas, unnest(efectivos_asignados) AS e")
        cur.execute(
            "INSERT INTO historial_estados (tarea_id, estado_anterior, estado_nuevo, usuario_id, motivo, extra_data, created_at, updated_at)"
            " SELECT id, s.a::estado_tarea, s.n::estado_tarea, 1, 'Cambio de estado', '{}', now()::timestamp, now()::timestamp"
            " FROM tareas, (VALUES (NULL, 'IN_PROGRESS'), ('IN_PROGRESS', 'COMPLETED')) AS s (a, n)"
        )
    conn.close()
