"""Erasure certificates: GET /v1/erasures/{id}/certificate, GET /v1/certificates/public-key."""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import SessionDep, SettingsDep, require
from api.errors import COMMON_ERRORS, problems
from core.certificates import signing
from core.erasure import service as erasures
from core.errors import NotFound
from core.tenancy.schemas import Principal, Scope

router = APIRouter(tags=["certificates"])

Reader = Annotated[Principal, Depends(require(Scope.erasures_read))]


class CertificateNotIssued(NotFound):
    kind = "certificate-not-issued"
    title = "No certificate for this request"


class PublicKeyOut(BaseModel):
    alg: str = Field(examples=["Ed25519"])
    key_id: str = Field(description="First 16 hex chars of sha256 over the raw public key.")
    public_key: str = Field(description="Raw 32-byte public key, base64.")
    public_key_pem: str = Field(description="SubjectPublicKeyInfo PEM (for `lethe certificate verify --public-key`).")


@router.get(
    "/v1/erasures/{request_id}/certificate",
    responses=problems(*COMMON_ERRORS),
    response_model=dict[str, Any],
    summary="The signed certificate of a succeeded, verified erasure.",
    description="`{certificate: {...}, signature: {alg, key_id, public_key, value}}`; `value` is an Ed25519 "
    "signature over the canonical JSON (sorted keys, no whitespace) of `certificate`. 404 until issued.",
)
def get_certificate(request_id: uuid.UUID, session: SessionDep, principal: Reader) -> dict[str, Any]:
    found = erasures.get(session, principal, request_id)
    if found.certificate is None:
        raise CertificateNotIssued(
            f"erasure request {request_id} has no certificate (status {found.status.value}); certificates are "
            "issued only for succeeded, verified erasures"
        )
    return found.certificate


@router.get(
    "/v1/certificates/public-key",
    response_model=PublicKeyOut,
    responses=problems(500),
    summary="The Ed25519 public key that signs certificates (no authentication needed).",
)
def public_key(settings: SettingsDep) -> PublicKeyOut:
    public = signing.private_key(settings).public_key()
    return PublicKeyOut(
        alg=signing.ALG,
        key_id=signing.key_id(public),
        public_key=base64.b64encode(signing.public_raw(public)).decode(),
        public_key_pem=signing.public_key_pem(public),
    )
