"""`lethe version` and `lethe config ...`."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version

import typer

from core.config import get_settings

app = typer.Typer(help="Inspect the effective configuration (LETHE_* environment variables).", no_args_is_help=True)

_LIBRARIES = ("torch", "diffusers", "transformers", "peft", "fastapi", "celery", "sqlalchemy", "boto3")


def _version(name: str) -> str:
    try:
        return pkg_version(name)
    except PackageNotFoundError:
        return "not installed"


def version(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    data = {"lethe": _version("lethe"), **{lib: _version(lib) for lib in _LIBRARIES}}
    if as_json:
        typer.echo(json.dumps(data))
        return
    for name, value in data.items():
        typer.echo(f"{name:<14}{value}")


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Print the effective settings, with secrets and URL passwords redacted."""
    data = get_settings().redacted()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for name, value in data.items():
        typer.echo(f"LETHE_{name.upper():<22}{value}")
