"""Erasure certificates: GET /v1/erasures/{id}/certificate, GET /v1/certificates/public-key."""

from __future__ import annotations

import base64
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.deps import SessionDep, SettingsDep, require
from api.errors import COMMON_ERRORS, problems
from core import signing
from core.certificates.schemas import CertificateDocument, PublicJwk, PublicKeyOut
from core.erasure import service as erasures
from core.errors import NotFound
from core.tenancy.schemas import Principal, Scope

router = APIRouter(tags=["certificates"])

Reader = Annotated[Principal, Depends(require(Scope.erasures_read))]


class CertificateNotIssued(NotFound):
    kind = "certificate-not-issued"
    title = "No certificate for this request"


@router.get(
    "/v1/erasures/{request_id}/certificate",
    responses=problems(*COMMON_ERRORS),
    response_model=CertificateDocument,
    summary="The signed certificate of a succeeded, verified erasure.",
    description="`{certificate: {...}, signature: {alg, key_id, public_key, jws}}`; `jws` is a compact JWS "
    "(EdDSA, Ed25519) with a detached payload, `header..signature`, over the RFC 8785 (JCS) canonical JSON of "
    "`certificate`. Served exactly as stored: keep every member, or the signature no longer matches. "
    "404 until issued.",
)
def get_certificate(request_id: uuid.UUID, session: SessionDep, principal: Reader) -> JSONResponse:
    found = erasures.get(session, principal, request_id)
    if found.certificate is None:
        raise CertificateNotIssued(
            f"erasure request {request_id} has no certificate (status {found.status.value}); certificates are "
            "issued only for succeeded, verified erasures"
        )
    return JSONResponse(found.certificate)


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
        jwk=PublicJwk(**signing.public_jwk(public)),
    )
