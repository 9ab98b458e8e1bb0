"""`lethe console ...`: list and revoke web console sessions."""

from __future__ import annotations

import uuid

import typer

from core.config import get_settings
from core.console import repository, service
from core.db import get_engine, unit_of_work
from core.errors import LetheError

app = typer.Typer(help="List and revoke web console sessions.", no_args_is_help=True)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command("sessions")
def sessions() -> None:
    """List open console sessions: id, tenant, key prefix and name, signed in, last seen."""
    with unit_of_work(get_engine(get_settings())) as session:
        for row in repository.list_open(session):
            typer.echo(f"{row.id}  {row.tenant_name:<20} {row.prefix}  {row.created_at:%Y-%m-%d %H:%M}  "
                       f"last seen {row.last_seen_at:%Y-%m-%d %H:%M:%S}  {row.key_name}")


@app.command("revoke")
def revoke(
    session_id: str | None = typer.Argument(None, help="The session id (from `lethe console sessions`)."),
    key: str | None = typer.Option(None, "--key", help="Revoke every session of the API key with this prefix."),
) -> None:
    """End a console session (or all of one key's) at once; its next request is sent to sign-in (audited)."""
    if (session_id is None) == (key is None):
        _fail("give a session id or --key PREFIX")
    try:
        with unit_of_work(get_engine(get_settings())) as session:
            if key is not None:
                typer.echo(f"revoked {service.revoke_of_key(session, key)} session(s)")
                return
            try:
                sid = uuid.UUID(str(session_id))
            except ValueError:
                _fail(f"not a session id: {session_id!r}")
                return
            service.revoke(session, sid)
            typer.echo(f"revoked {sid}")
    except LetheError as exc:
        _fail(exc.detail)
