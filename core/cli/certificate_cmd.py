"""`lethe certificate verify FILE...`: check erasure certificates offline, one or a model's chain (--chain)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from core import signing
from core.certificates.chain import verify_chain
from core.certificates.service import verify_document
from core.config import get_settings

app = typer.Typer(help="Work with signed erasure certificates.", no_args_is_help=True)


@app.command("verify")
def verify(
    files: list[Path] = typer.Argument(..., help="Certificate JSON (GET /v1/erasures/{id}/certificate); with "
                                       "--chain, every certificate of the lineage (any order)."),
    public_key: Path | None = typer.Option(
        None, "--public-key",
        help="Trusted public key (PEM or base64; GET /v1/certificates/public-key). Default: this server's key "
        "(LETHE_SIGNING_KEY or the data dir's signing.key; exit 2 when there is none).",
    ),
    trust_embedded: bool = typer.Option(
        False, "--trust-embedded", help="Only check integrity against the key embedded in the certificate."
    ),
    chain: bool = typer.Option(
        False, "--chain", help="The files are a model version's certificate and its predecessors': check each, "
        "that each links the previous by sha256 back to version 1, and that no erased concept was lost.",
    ),
) -> None:
    """Verify the signature — a detached JWS (EdDSA) over the RFC 8785 canonical JSON of the certificate — with
    no network; exit 1 if the certificate is altered or not ours, exit 2 if there is no trusted key to check
    against."""
    documents = []
    for file in files:
        try:
            documents.append(json.loads(file.read_text()))
        except (OSError, ValueError) as exc:
            typer.echo(f"invalid: cannot read {file}: {exc}", err=True)
            raise typer.Exit(1)
    if len(documents) > 1 and not chain:
        typer.echo("error: several files need --chain", err=True)
        raise typer.Exit(2)
    trusted = None
    if not trust_embedded:
        try:
            if public_key is not None:
                trusted = signing.load_public_key(public_key.read_bytes())
            else:
                own = signing.existing_private_key(get_settings())
                if own is None:
                    typer.echo("error: no trusted key to check against: this machine has no signing key "
                               "(LETHE_SIGNING_KEY is unset and LETHE_DATA_DIR holds no signing.key). Pass "
                               "--public-key FILE (from GET /v1/certificates/public-key), or --trust-embedded "
                               "to check integrity only.", err=True)
                    raise typer.Exit(2)
                trusted = own.public_key()
        except (OSError, ValueError) as exc:
            typer.echo(f"invalid: cannot load the trusted key: {exc}", err=True)
            raise typer.Exit(1)
    if chain:
        walked = verify_chain(documents, trusted)
        for link in walked.links:
            typer.echo(f"erasure {link.request_id} on version {link.model_version} · sha256 {link.sha256[:16]} · "
                       f"erased: {', '.join(link.concepts)}")
        typer.echo(walked.reason if walked.ok else f"invalid: {walked.reason}")
        if not walked.ok:
            raise typer.Exit(1)
        return
    document = documents[0]
    result = verify_document(document, trusted)
    if not result.ok:
        typer.echo(f"invalid: {result.reason}")
        raise typer.Exit(1)
    cert = document["certificate"]
    typer.echo(result.reason)
    typer.echo(f"request {cert['request']['id']} · model {cert['model'].get('fingerprint_before')} · "
               f"issued {cert['issued_at']} · audit seq {cert.get('audit', {}).get('seq')}")
