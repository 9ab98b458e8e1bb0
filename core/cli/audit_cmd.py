"""`lethe audit ...`: check the hash-chained audit log."""

from __future__ import annotations

import json

import typer

from core.audit import service
from core.config import get_settings
from core.db import get_engine, unit_of_work

app = typer.Typer(help="Inspect the tamper-evident audit trail.", no_args_is_help=True)


@app.command("verify")
def verify(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Recompute every hash of the audit chain; exit 1 and name the first broken seq if it was altered."""
    with unit_of_work(get_engine(get_settings())) as session:
        report = service.verify(session)
    data = {"ok": report.ok, "checked": report.checked, "first_broken_seq": report.first_broken_seq}
    if as_json:
        typer.echo(json.dumps(data))
    elif report.ok:
        typer.echo(f"ok: {report.checked} events verified")
    else:
        typer.echo(f"BROKEN at seq {report.first_broken_seq} ({report.checked} events verified before it)")
    if not report.ok:
        raise typer.Exit(1)
