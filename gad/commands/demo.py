"""``flask gad demo-refresh`` and ``demo-patrol``: keep the demo alive (fresh positions, a walking patrol, new tareas).

Development only, so a newcomer's board stays alive: positions stay fresh (dispatch finds people) and the
feed moves. Everything goes through the services, so the board and the phone page see ordinary events.
"""

from __future__ import annotations

import itertools
import random
import time

import click
from flask import current_app
from sqlalchemy import select

from gad.commands.seed import OFFSETS, demo_point
from gad.extensions import db
from gad.models import Efectivo, Usuario, utcnow
from gad.services import efectivos, tareas

# Loops along real streets around Puerta del Sol (waypoints at corners): Mayor–Arenal, Gran Vía, Atocha–Prado.
ROUTES = [
    [(40.4169, -3.7035), (40.4155, -3.7074), (40.4153, -3.7105), (40.4180, -3.7100), (40.4185, -3.7065), (40.4169, -3.7035)],
    [(40.4203, -3.7058), (40.4199, -3.7010), (40.4193, -3.6960), (40.4188, -3.6930), (40.4199, -3.7010), (40.4203, -3.7058)],
    [(40.4146, -3.7005), (40.4125, -3.6975), (40.4095, -3.6930), (40.4105, -3.6925), (40.4140, -3.6935), (40.4146, -3.7005)],
]
STEPS_PER_LEG = 6


def _route_points(route: list[tuple[float, float]]) -> list[tuple[float, float]]:
    points = []
    for (lat1, lon1), (lat2, lon2) in itertools.pairwise(route):
        points += [(round(lat1 + (lat2 - lat1) * k / STEPS_PER_LEG, 6), round(lon1 + (lon2 - lon1) * k / STEPS_PER_LEG, 6)) for k in range(STEPS_PER_LEG)]
    return points


def patrol_step(step: int, admin: Usuario) -> int:
    """Move every demo efectivo not linked to a usuario one point along its loop; returns how many moved."""
    moved = 0
    demo = db.session.scalars(
        select(Efectivo).where(Efectivo.codigo_interno.like("EF-%"), Efectivo.usuario_id.is_(None), Efectivo.activo.is_(True)).order_by(Efectivo.id)
    )
    for index, efectivo in enumerate(demo):
        points = _route_points(ROUTES[index % len(ROUTES)])
        lat, lng = points[(step + index * 3) % len(points)]
        efectivos.set_ubicacion(admin, efectivo.id, lat, lng)
        moved += 1
    return moved


def new_demo_tarea(admin: Usuario, rng: random.Random) -> str:
    route = rng.choice(ROUTES)
    lat, lng = rng.choice(route)
    codigo = f"DEMO-{utcnow():%H%M%S}"
    titulo = rng.choice(["Aviso de ruido en vivienda", "Vehículo mal estacionado", "Persona desorientada", "Control de acceso en evento"])
    tareas.create_tarea(
        admin, {"codigo": codigo, "titulo": titulo, "tipo": "vigilancia", "prioridad": rng.randint(1, 4), "ubicacion_lat": lat, "ubicacion_lng": lng}
    )
    return codigo


@click.command("demo-patrol")
@click.option("--interval", default=10.0, show_default=True, help="Seconds between moves.")
@click.option("--tarea-every", default=18, show_default=True, help="Create a demo tarea every N moves (0: never).")
@click.option("--steps", default=0, help="Stop after N moves (0: run until interrupted).")
def demo_patrol(interval: float, tarea_every: int, steps: int) -> None:
    """Walk the demo efectivos along their loops and now and then create a tarea (development only)."""
    if current_app.config.get("GAD_ENV") == "production":
        raise click.ClickException("demo-patrol is for development and demos, never production.")
    admin = db.session.scalar(select(Usuario).where(Usuario.email == "admin@gad.local"))
    if admin is None:
        raise click.ClickException("Run 'flask gad seed-demo' first.")
    rng = random.Random(7)
    click.echo(f"Patrulla de demostración: un paso cada {interval:.0f} s (Ctrl-C para parar)")
    for step in itertools.count():
        if steps and step >= steps:
            break
        moved = patrol_step(step, admin)
        note = ""
        if tarea_every and step and step % tarea_every == 0:
            note = f", nueva tarea {new_demo_tarea(admin, rng)}"
        db.session.commit()
        click.echo(f"  paso {step}: {moved} efectivos movidos{note}")
        if not steps or step + 1 < steps:
            time.sleep(interval)


def refresh_demo_positions(admin: Usuario) -> int:
    """Report the demo efectivos at their seeded spots again, now: positions older than POSICION_MAX_EDAD_S
    are ignored by dispatch, so without this every emergency 15 minutes after seeding found nobody."""
    refreshed = 0
    for index, (dlat, dlon) in enumerate(OFFSETS):
        efectivo = db.session.scalar(select(Efectivo).where(Efectivo.codigo_interno == f"EF-{index + 1:03d}", Efectivo.activo.is_(True)))
        if efectivo is not None:
            efectivos.set_ubicacion(admin, efectivo.id, *demo_point(dlat, dlon))
            refreshed += 1
    return refreshed


@click.command("demo-refresh")
def demo_refresh() -> None:
    """Give the demo efectivos a position taken now (./scripts/run does this at every start)."""
    if current_app.config.get("GAD_ENV") == "production":
        raise click.ClickException("demo-refresh is for development and demos, never production.")
    admin = db.session.scalar(select(Usuario).where(Usuario.email == "admin@gad.local"))
    if admin is None:
        raise click.ClickException("Run 'flask gad seed-demo' first.")
    refreshed = refresh_demo_positions(admin)
    db.session.commit()
    click.echo(f"{refreshed} posiciones de demostración actualizadas")
