"""`lethe model versions|head`: a model's versions and its head, on this server's database (operators)."""

from __future__ import annotations

import getpass
import json
import uuid

import typer

from core.config import get_settings
from core.db import get_engine, unit_of_work
from core.errors import LetheError
from core.registry.models import RegisteredModel
from core.versions import repository, service
from core.versions.schemas import HeadMove

app = typer.Typer(help="A registered model's versions (its erasure lineage) and head.", no_args_is_help=True)


def _model(session: object, model_id: uuid.UUID) -> RegisteredModel:
    model = session.get(RegisteredModel, model_id)  # type: ignore[attr-defined]
    if model is None:
        typer.echo(f"error: no model {model_id}", err=True)
        raise typer.Exit(1)
    return model


@app.command("versions")
def versions(
    model_id: uuid.UUID = typer.Argument(..., help="The model's id."),
    as_json: bool = typer.Option(False, "--json", help="Print the versions as JSON (as GET .../versions does)."),
) -> None:
    """List the model's versions, oldest first: parent, erasure, status, erased concepts, adapter; * is the head."""
    with unit_of_work(get_engine(get_settings())) as session:
        model = _model(session, model_id)
        rows = [service.to_out(model, v) for v in repository.list_versions(session, model.id)]
        head = model.head_version
    if as_json:
        typer.echo(json.dumps({"head": head, "items": [r.model_dump(mode="json") for r in rows]}, indent=2))
        return
    for v in rows:
        adapter = ("exact rank " + str(v.adapter.rank)) if v.adapter and v.adapter.exact else (
            "fused only" if v.adapter else "-")
        concepts = ", ".join(f"{c.target} (v{c.version})" for c in v.erased_concepts) or "-"
        typer.echo(f"{'*' if v.head else ' '} v{v.number} {v.status.value:<7} parent "
                   f"{('v' + str(v.parent)) if v.parent else '-':<4} erasure {v.erasure_id or '-'} "
                   f"adapter {adapter} · erased: {concepts}")


@app.command("head")
def head(
    model_id: uuid.UUID = typer.Argument(..., help="The model's id."),
    set_to: int | None = typer.Option(None, "--set", min=1, help="Move the head to this ready version."),
    reason: str | None = typer.Option(None, "--reason", help="Why the head moves (required with --set; audited)."),
) -> None:
    """Print the head, or move it (roll back or forward) with --set N --reason TEXT, audited as this operator."""
    with unit_of_work(get_engine(get_settings())) as session:
        model = _model(session, model_id)
        if set_to is None:
            typer.echo(str(model.head_version))
            return
        if not reason or not reason.strip():
            typer.echo("error: --reason is required to move the head", err=True)
            raise typer.Exit(2)
        try:
            moved = service.move_head(session, model.tenant_id, model.id, HeadMove(version=set_to, reason=reason),
                                      actor=f"operator:{getpass.getuser()}")
        except LetheError as exc:
            typer.echo(f"error: {exc.detail}", err=True)
            raise typer.Exit(1)
        typer.echo(f"head is version {moved.head_version}")
