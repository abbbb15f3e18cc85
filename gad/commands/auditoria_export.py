"""``flask gad audit export|verify-export``: write a range of the event log as JSON Lines, check such a file offline."""

from __future__ import annotations

import os
from datetime import datetime
from typing import IO

import click
from flask.cli import with_appcontext

from gad.realtime import chain
from gad.services import auditoria_export


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no UTC offset (e.g. 2027-03-01T00:00:00+01:00)")
    return parsed


@click.command("export")
@with_appcontext
@click.option("--desde", default=None, help="ISO 8601 instant with offset; events created at or after it.")
@click.option("--hasta", default=None, help="ISO 8601 instant with offset; events created before it.")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="File to write (default: stdout).")
def export(desde: str | None, hasta: str | None, output: IO[str]) -> None:
    """Write the events of a range as JSON Lines with the chain's anchor and a trailer."""
    for chunk in auditoria_export.export_lines(_instant(desde), _instant(hasta)):
        output.write(chunk)


def _verify(path: IO[str], key: bytes) -> None:
    result = auditoria_export.verify_lines(path, key)
    if not result.ok:
        raise click.ClickException(f"export does not verify: {result.problem} ({result.checked} events verified before it)")
    click.echo(f"export intact: {result.checked} events verified")


@click.command("verify-export")
@with_appcontext
@click.argument("path", type=click.File("r", encoding="utf-8"))
def verify_export(path: IO[str]) -> None:
    """Check an export's hash chain without the database; exit 1 naming the first bad event."""
    _verify(path, chain.current_key())


@click.command("verify-export")
@click.argument("path", type=click.File("r", encoding="utf-8"))
def verify_export_offline(path: IO[str]) -> None:
    """The same check with no Flask app at all: the code, the file and the service's AUDIT_KEY are enough."""
    key = os.environ.get("AUDIT_KEY")
    if not key:
        raise click.ClickException("Set AUDIT_KEY to the key the service runs with: the chain is an HMAC under it.")
    _verify(path, key.encode())


if __name__ == "__main__":
    # Offline, on any machine with the code: ``python -m gad.commands.auditoria_export FICHERO``
    # (no database, no app; the same check as ``flask gad audit verify-export``).
    verify_export_offline()
