"""``flask gad seed-demo``: idempotent demo data (usuarios of every nivel, efectivos around Madrid, tareas in every estado)."""

from __future__ import annotations

import secrets
from datetime import timedelta

import click
from flask import current_app
from sqlalchemy import select

from gad.extensions import db
from gad.models import Efectivo, Tarea, Usuario, utcnow
from gad.services import asignaciones, auth, efectivos, tareas, transitions, usuarios
from gad.vocab import EstadoTarea

DEMO_PASSWORD = "demo-password-2026"
DEMO_USERS = [
    ("admin@gad.local", "Ana", "Administradora", "10000001A", 3),
    ("supervisor@gad.local", "Sergio", "Supervisor", "10000002B", 2),
    ("efectivo@gad.local", "Elena", "Efectivo", "10000003C", 1),
    ("efectivo2@gad.local", "Eduardo", "Efectivo", "10000004D", 1),
]
# Puerta del Sol, Madrid, and points a few hundred metres to a few km around it.
CENTER = (40.4169, -3.7035)
OFFSETS = [(0.0, 0.0), (0.004, 0.003), (-0.006, 0.002), (0.010, -0.008), (-0.015, -0.012), (0.020, 0.015), (0.002, -0.020), (-0.025, 0.010)]
# Each with its schedule, in hours from the seeding (start, end), as its estado implies: a tarea started or finished
# was due before now.
DEMO_TAREAS = [
    ("DEMO-PAT-01", "Patrullaje zona centro", "patrullaje", 3, None, (1, 5)),
    ("DEMO-VIG-02", "Vigilancia estación de Atocha", "vigilancia", 2, EstadoTarea.EN_CURSO, (-1, 3)),
    ("DEMO-INV-03", "Investigación robo en comercio", "investigacion", 4, EstadoTarea.PAUSADA, (-2, 2)),
    ("DEMO-INT-04", "Intervención en evento deportivo", "intervencion", 5, EstadoTarea.FINALIZADA, (-6, -2)),
    ("DEMO-ENT-05", "Entrenamiento de tiro semanal", "entrenamiento", 1, EstadoTarea.CANCELADA, (24, 26)),
]


def demo_point(dlat: float, dlon: float) -> tuple[float, float]:
    """The spot ``(dlat, dlon)`` degrees from CENTER, to the 0.1 m a phone's fix has (the sum alone read
    40.426899999999996 in every answer)."""
    return round(CENTER[0] + dlat, 6), round(CENTER[1] + dlon, 6)


@click.command("seed-demo")
@click.option("--force", is_flag=True, help="Allow it in production (GAD_ENV=production); the usuarios then get a random password, printed once.")
def seed_demo(force: bool) -> None:
    """Create demo data; running it again changes nothing.

    Outside production the demo usuarios share the documented password. In production it refuses
    unless ``--force`` is given, and then never uses a published password: a random one is printed once,
    and given also to any demo usuario that still has the published one.
    """
    password = DEMO_PASSWORD
    production = current_app.config.get("GAD_ENV") == "production"
    if production:
        if not force:
            raise click.ClickException(
                "seed-demo refuses to run in production (GAD_ENV=production): it creates demo usuarios; pass --force to create them anyway"
            )
        password = secrets.token_urlsafe(18)
    created = 0
    by_email: dict[str, Usuario] = {}
    for email, nombre, apellido, dni, nivel in DEMO_USERS:
        usuario = db.session.scalar(select(Usuario).where(Usuario.email == email))
        if usuario is None:
            usuario = usuarios.create_usuario(
                None, {"email": email, "password": password, "dni": dni, "nombre": nombre, "apellido": apellido, "nivel": nivel, "verificado": True}
            )
            created += 1
        elif production and auth.verify_password(usuario.password_hash, DEMO_PASSWORD):
            # Seeded before this refusal existed (or in a copied development database): same fate as a new one.
            usuario.password_hash = auth.hash_password(password)
            auth.revoke_all_tokens(usuario)
            created += 1
        by_email[email] = usuario
    admin = by_email["admin@gad.local"]
    linked = {0: by_email["efectivo@gad.local"].id, 1: by_email["efectivo2@gad.local"].id}
    now = utcnow()
    for index, (dlat, dlon) in enumerate(OFFSETS):
        codigo = f"EF-{index + 1:03d}"
        if db.session.scalar(select(Efectivo.id).where(Efectivo.codigo_interno == codigo)) is None:
            efectivo = efectivos.create_efectivo(
                None,
                {
                    "codigo_interno": codigo,
                    "nombre": f"Agente {index + 1}",
                    "usuario_id": linked.get(index),
                    "rango": ["Cabo", "Sargento", "Oficial"][index % 3],
                    "unidad": f"Móvil {101 + index % 3}",
                    "especialidad": ["patrulla", "investigación", "tráfico"][index % 3],
                },
            )
            (efectivo.lat, efectivo.lon), efectivo.posicion_en = demo_point(dlat, dlon), now
            created += 1
    db.session.flush()
    for position, (codigo, titulo, tipo, prioridad, estado, (start, end)) in enumerate(DEMO_TAREAS):
        if db.session.scalar(select(Tarea.id).where(Tarea.codigo == codigo)) is not None:
            continue
        lat, lng = demo_point(*OFFSETS[position])
        tarea_id = tareas.create_tarea(
            admin,
            {
                "codigo": codigo,
                "titulo": titulo,
                "tipo": tipo,
                "prioridad": prioridad,
                "inicio_programado": now + timedelta(hours=start),
                "fin_programado": now + timedelta(hours=end),
                "ubicacion_lat": lat,
                "ubicacion_lng": lng,
                "delegado_usuario_id": by_email["supervisor@gad.local"].id,
            },
        ).id
        if position == 1:
            first = db.session.scalar(select(Efectivo).where(Efectivo.codigo_interno == "EF-001"))
            if first is not None:
                asignaciones.assign(admin, tarea_id, [first.id], None)
        path = (
            {
                EstadoTarea.EN_CURSO: [EstadoTarea.EN_CURSO],
                EstadoTarea.PAUSADA: [EstadoTarea.EN_CURSO, EstadoTarea.PAUSADA],
                EstadoTarea.FINALIZADA: [EstadoTarea.EN_CURSO, EstadoTarea.FINALIZADA],
                EstadoTarea.CANCELADA: [EstadoTarea.CANCELADA],
            }.get(estado, [])
            if estado
            else []
        )
        for step in path:
            transitions.transition(admin, tarea_id, step, None, None)
        created += 1
    db.session.commit()
    if password == DEMO_PASSWORD:
        click.echo(f"Demo data ready ({created} rows created). Log in as admin@gad.local / {DEMO_PASSWORD}")
    else:
        click.echo(f"Demo data ready ({created} rows created). Password of the demo usuarios created or reset now (shown once): {password}")
