"""Assembles the `lethe` typer app from the per-topic command modules."""

from __future__ import annotations

import typer

from core.cli import (
    audit_cmd,
    certificate_cmd,
    config_cmd,
    console_cmd,
    db_cmd,
    demo_cmd,
    erase_cmd,
    keys_cmd,
    model_cmd,
    testbed_cmd,
    worker_cmd,
)

app = typer.Typer(
    name="lethe",
    help="Lethe: erase concepts from text-to-image diffusion models with SPARE, with proof and an audit trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

app.command("version", help="Print Lethe's version and the versions of the libraries it runs on.")(
    config_cmd.version
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(db_cmd.app, name="db")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(console_cmd.app, name="console")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(certificate_cmd.app, name="certificate")
app.add_typer(model_cmd.app, name="model")
app.add_typer(testbed_cmd.app, name="testbed")
app.command("erase", help="Erase concepts from a diffusion model with SPARE (or the ESD baseline).")(erase_cmd.erase)
app.command("worker", help="Start a Celery worker (gpu and/or default queue).")(worker_cmd.worker)
app.command("beat", help="Run the sweeper and the schedules periodically.")(worker_cmd.beat)
app.command("serve", help="Serve the HTTP API (and, in embedded mode, run jobs in-process).")(worker_cmd.serve)
app.command("demo", help="Erase a testbed concept end to end through the embedded service and show the proof.")(
    demo_cmd.demo
)


def main() -> None:
    app()
