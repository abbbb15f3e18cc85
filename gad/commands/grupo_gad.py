"""``flask gad import-grupo-gad``: bring a GRUPO_GAD database across, one committed batch at a time."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click

from gad.extensions import db
from gad.importers.grupo_gad import Importer, SourceRefused, open_source


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Ctrl-C or SIGTERM (a stopped container, a killed job): the open batch rolls back, committed ones stay.
    raise KeyboardInterrupt


def _progress(entidad: str, done: int, total: int, rate: float, left: float | None) -> None:
    pct = 100 * done / total if total else 100
    eta = f"~{left:.0f} s left" if left is not None else "time left unknown"
    click.echo(f"{entidad:<10} {done:>9,}/{total:,} rows ({pct:5.1f}%) · {rate:,.0f} rows/s · {eta}", err=True)


@click.command("import-grupo-gad")
@click.argument("source_url")
@click.option("--dry-run", is_flag=True, help="Do everything in one transaction, print the report, roll it all back.")
@click.option("--skip-invalid", is_flag=True, help="Import the other rows when some cannot be imported (they are listed).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=1000, show_default=True, help="Source rows per transaction.")
def import_grupo_gad(source_url: str, dry_run: bool, skip_invalid: bool, batch_size: int) -> None:
    """Import usuarios, efectivos, tareas, assignments and state history from a GRUPO_GAD database.

    SOURCE_URL is read read-only. Safe to interrupt and to run again: committed batches are kept and
    skipped next time; source rows changed since they were imported are reported, never overwritten.
    Exit status: 0 done, 1 refused or stopped at rows that cannot be imported, 130 interrupted.
    """
    try:
        source = open_source(source_url)
    except SourceRefused as exc:
        raise click.ClickException(f"refused: {exc}") from None
    importer = Importer(
        source,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        batch_size=batch_size,
        # A dry run flushes each batch (so GAD's constraints are checked and later batches see earlier ones)
        # inside one transaction that is rolled back at the end.
        end_batch=db.session.flush if dry_run else db.session.commit,
        progress=_progress,
    )
    # Installed explicitly: a process started in the background (nohup, `&`, a job runner) inherits SIGINT
    # ignored, and the run must still stop cleanly when asked to.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        report = importer.run()
    except KeyboardInterrupt:
        report = importer.report
        report.interrupted = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        source.close()
    # The batch in progress when stopped or interrupted is incomplete: it never commits.
    db.session.rollback()
    if not dry_run:
        importer.record_finished()
        db.session.commit()
    for line in report.lines():
        click.echo(line)
    if report.interrupted:
        sys.exit(130)
    if report.stopped:
        sys.exit(1)
