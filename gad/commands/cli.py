"""The ``flask gad`` command group: administration tasks that call services and commit at the edge."""

from __future__ import annotations

import hashlib
import os
import sys

import click
from flask import current_app
from flask.cli import AppGroup
from pydantic import ValidationError

from gad.commands.audit import audit_cli
from gad.commands.auditoria_export import export as audit_export
from gad.commands.auditoria_export import verify_export
from gad.commands.demo import demo_patrol, demo_refresh
from gad.commands.grupo_gad import import_grupo_gad
from gad.commands.seed import seed_demo
from gad.errors import AppError, pydantic_errors
from gad.extensions import db
from gad.schemas.usuarios import UsuarioIn
from gad.services import usuarios

gad_cli = AppGroup("gad", help="GAD administration commands.")
gad_cli.add_command(seed_demo)
gad_cli.add_command(audit_cli)
audit_cli.add_command(audit_export)
audit_cli.add_command(verify_export)


@gad_cli.command("openapi")
@click.option("--check", is_flag=True, help="Exit 1 if the shipped document differs from the code, without writing it.")
def openapi_document(check: bool) -> None:
    """Generate the OpenAPI document from the schemas into gad/openapi.json (the file workers serve)."""
    from gad import openapi

    text = openapi.render(current_app._get_current_object())  # type: ignore[attr-defined]
    target = openapi.SHIPPED_DOCUMENT
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if check:
        if current != text:
            raise click.ClickException(f"{target} does not match the code: run `flask --app wsgi gad openapi` and commit it")
        click.echo(f"{target} matches the code")
        return
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target} ({len(text.encode())} bytes){'' if current != text else ', unchanged'}")


gad_cli.add_command(demo_patrol)
gad_cli.add_command(demo_refresh)
gad_cli.add_command(import_grupo_gad)


@gad_cli.command("create-admin")
@click.argument("email")
@click.option("--nombre", default="Administrador", show_default=True)
@click.option("--apellido", default="Sistema", show_default=True)
@click.option("--dni", default=None, help="DNI (default: derived from the e-mail).")
def create_admin(email: str, nombre: str, apellido: str, dni: str | None) -> None:
    """Create an administrador. The password comes from GAD_ADMIN_PASSWORD or a hidden prompt."""
    password = os.environ.get("GAD_ADMIN_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            raise click.ClickException("Set GAD_ADMIN_PASSWORD or run interactively to type the password.")
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    fields = {
        "email": email,
        "password": password,
        "dni": dni or "ADM" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:10].upper(),
        "nombre": nombre,
        "apellido": apellido,
        "nivel": 3,
        "verificado": True,
    }
    try:
        # The API's own schema: an argument it would refuse must not reach the database (a CHECK's traceback).
        data = UsuarioIn.model_validate(fields).model_dump()
    except ValidationError as exc:
        details = "; ".join(f"{e['field'].removeprefix('body.')}: {e['message']}" for e in pydantic_errors(exc))
        raise click.ClickException(f"Invalid administrador: {details}") from None
    try:
        usuario = usuarios.create_usuario(None, data)
        db.session.commit()
    except AppError as exc:
        db.session.rollback()
        # Field paths as the API names them ("body.password") mean nothing on a command line: the option's name.
        details = "; ".join(f"{e['field'].removeprefix('body.')}: {e['message']}" for e in exc.errors or [])
        raise click.ClickException(f"{exc.detail} {details}".strip()) from None
    click.echo(f"Created administrador {usuario.email} (id {usuario.id}).")
