"""`lethe keys ...`: bootstrap tenants and API keys (the key is printed once and never stored)."""

from __future__ import annotations

import typer
from sqlalchemy.exc import SQLAlchemyError

from core.config import get_settings
from core.db import get_engine, unit_of_work
from core.errors import LetheError
from core.tenancy import repository, service
from core.tenancy.schemas import ALL_SCOPES

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command("create")
def create(
    tenant: str = typer.Option(..., "--tenant", help="Tenant name; created if it does not exist."),
    scopes: str = typer.Option(..., "--scopes", help=f"Comma-separated scopes: {', '.join(ALL_SCOPES)}."),
    name: str = typer.Option("", "--name", help="A label for the key (shown in listings)."),
    require_approval: bool | None = typer.Option(
        None, "--require-approval/--no-require-approval",
        help="Set the tenant's four-eyes rule (requests wait for a second key's approval).",
    ),
) -> None:
    """Create an API key for TENANT and print it once (stdout); details go to stderr."""
    settings = get_settings()
    try:
        with unit_of_work(get_engine(settings)) as session:
            row = service.get_or_create_tenant(session, tenant, require_approval=require_approval)
            key, plaintext = service.create_key(session, settings, row, scopes, name=name)
            info = f"tenant {row.name} (id {row.id}) · prefix {key.prefix} · scopes {','.join(key.scopes)}"
            approval = row.require_approval
    except LetheError as exc:
        _fail(exc.detail)
    except SQLAlchemyError as exc:
        _fail(f"database error ({type(exc).__name__}); is the schema migrated? run `lethe db upgrade`")
    typer.echo(plaintext)
    typer.echo(f"{info} · require_approval {approval}. Store the key now: it is not shown again.", err=True)


@app.command("list")
def list_keys(tenant: str = typer.Option(..., "--tenant", help="Tenant name.")) -> None:
    """List a tenant's keys (prefixes only; secrets are never stored)."""
    with unit_of_work(get_engine(get_settings())) as session:
        row = repository.tenant_by_name(session, tenant)
        if row is None:
            _fail(f"no tenant named {tenant!r}")
            return
        for key in repository.keys_of_tenant(session, row.id):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            typer.echo(f"{key.prefix}  {','.join(key.scopes):<40} {state:<18} {key.name}")


@app.command("revoke")
def revoke(prefix: str = typer.Argument(..., help="The key's prefix (lth_XXXXXXXXXX) or the whole key.")) -> None:
    """Revoke a key: it stops authenticating at once (audited); its schedules are paused."""
    from core import wiring

    wiring.load()  # what revoking a key sets off in other domains (core.tenancy.service.KEY_REVOKED)
    try:
        with unit_of_work(get_engine(get_settings())) as session:
            key = service.revoke_key(session, prefix)
            typer.echo(f"revoked {key.prefix}")
    except LetheError as exc:
        _fail(exc.detail)
