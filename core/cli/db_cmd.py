"""`lethe db ...`: schema migrations on the configured database."""

from __future__ import annotations

import typer

from core.migrate import downgrade, upgrade

app = typer.Typer(help="Manage the database schema (Alembic migrations).", no_args_is_help=True)


@app.command("upgrade")
def upgrade_cmd(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the configured database (LETHE_DATABASE_URL) up to REVISION (default: head)."""
    upgrade(revision=revision)
    typer.echo(f"database upgraded to {revision}")


@app.command("downgrade")
def downgrade_cmd(revision: str = typer.Argument(..., help="Target revision, e.g. base or -1.")) -> None:
    """Migrate the configured database down to REVISION."""
    downgrade(revision=revision)
    typer.echo(f"database downgraded to {revision}")
