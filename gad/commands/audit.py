"""``flask gad audit verify|prune``: prove the event log was not altered; prune beyond retention."""

from __future__ import annotations

import getpass

import click

from gad.extensions import db
from gad.services import audit

audit_cli = click.Group("audit", help="Audit trail commands.")


@audit_cli.command("verify")
@click.option("--expect", metavar="ID:HASH", help="A head printed by an earlier run and kept outside the database; it must still be in the log.")
def verify(expect: str | None) -> None:
    """Walk the hash chain; exit 1 naming the first event whose content or link does not match."""
    expected: tuple[int, str] | None = None
    if expect:
        event_id, _, digest = expect.partition(":")
        if not event_id.isdigit() or len(digest) != 64:
            raise click.BadParameter("expected ID:HASH as printed by `flask gad audit verify`", param_hint="--expect")
        expected = (int(event_id), digest)
    result = audit.verify_chain(expected)
    if not result.ok:
        raise click.ClickException(f"audit chain broken at event {result.first_bad_id}: {result.problem} ({result.checked} events verified before it)")
    click.echo(f"audit chain intact: {result.checked} events verified; head {result.head_id}:{result.head_hash}")


@audit_cli.command("prune")
@click.option("--older-than-days", type=click.IntRange(min=1), required=True, help="Delete events older than this many days.")
def prune(older_than_days: int) -> None:
    """Delete events beyond retention, record what was pruned, and re-anchor the chain."""
    anchor = audit.prune(older_than_days, actor=getpass.getuser())
    db.session.commit()
    if anchor is None:
        click.echo("nothing to prune")
    else:
        click.echo(f"pruned {anchor.pruned_count} events up to id {anchor.pruned_up_to_id}; chain re-anchored at {anchor.last_hash[:12]}…")
