"""`lethe audit ...`: check the hash-chained audit log."""

from __future__ import annotations

import json

import typer

from core.audit import service
from core.config import get_settings
from core.db import get_engine, unit_of_work

app = typer.Typer(help="Inspect the tamper-evident audit trail.", no_args_is_help=True)


@app.command("verify")
def verify(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    full: bool = typer.Option(False, "--full", help="Recompute from the first event, not the last checkpoint."),
    local: bool = typer.Option(
        False, "--local", help="Check this database on its own (a backup or restored copy): its own checkpoints, "
        "not the object store's newest one, and sign nothing.",
    ),
) -> None:
    """Verify the audit chain (from its newest signed checkpoint, or all of it with --full) and sign its head;
    exit 1 and name the first broken seq if it was altered or truncated."""
    settings = get_settings()
    with unit_of_work(get_engine(settings)) as session:
        report = service.verify(session, settings, full=full, use_store_head=not local, sign_head=not local)
    data = {"ok": report.ok, "checked": report.checked, "first_broken_seq": report.first_broken_seq,
            "problem": report.problem, "head_seq": report.head_seq,
            "checkpoint_seq": report.checkpoint.seq if report.checkpoint else None}
    if as_json:
        typer.echo(json.dumps(data))
    elif report.ok:
        typer.echo(f"ok: {report.checked} events verified")
    else:
        typer.echo(f"BROKEN at seq {report.first_broken_seq} ({report.problem}; "
                   f"{report.checked} events verified before it)")
    if not report.ok:
        raise typer.Exit(1)
