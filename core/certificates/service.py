"""Erasure certificates: a signed JSON statement that a request's erasure ran and passed verification.

`issue` is called by the worker's job-completion code inside its success transaction (the erase handler,
core.erasure.handlers, when its job completes). It refuses anything but a succeeded request whose job
succeeded and whose verification checks all passed — a certificate is never issued for a failed or unverified erasure.

Document: {"certificate": {...}, "signature": {"alg": "EdDSA", "key_id", "public_key", "jws"}}, where `jws` is a
compact JWS with a detached payload (`header..signature`, RFC 7515 Appendix F) whose payload is the RFC 8785
(JCS) canonical JSON of `certificate` — see core.signing. `certificate.audit` names the audit event
(`certificate.issued`) whose payload holds the sha256 of the JCS bytes of the certificate without its `audit`
member, so the audit chain covers the certificate and the certificate points into the chain.

`build_certificate` is the one place that decides what a certificate states.

A certificate is meant to be handed to third parties (rights holders, auditors): it names the model by id,
name, architecture and weight fingerprint, never by tenant id or storage location (source URI, object keys).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from core import signing
from core.audit import service as audit
from core.canonical import canonicalize, to_json_data
from core.config import Settings, get_settings
from core.erasure.models import ErasureRequest
from core.erasure.outcome import ErasureMetrics
from core.erasure.states import RequestStatus
from core.errors import Conflict
from core.jobs.models import Artifact, Job
from core.jobs.states import JobState
from core.registry.models import RegisteredModel
from core.timeutil import utcnow

VERSION = 2  # 1: Ed25519 over Python's sorted-key json.dumps (still verified)


class CertificateRefused(Conflict):
    kind = "certificate-refused"
    title = "No certificate for an unverified erasure"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _metrics(stored: dict[str, Any] | None) -> ErasureMetrics | None:
    try:
        return ErasureMetrics.model_validate(stored or {})
    except ValidationError:
        return None  # not metrics this version can read: nothing it could certify


def verification_passed(stored: dict[str, Any] | None) -> bool:
    """Every check passed, and at least one of them is a judge's verdict on held-out images."""
    metrics = _metrics(stored)
    if metrics is None or not metrics.verification or metrics.judge is None:
        return False
    checks = metrics.verification.values()
    return any(c.evidence == "image" for c in checks) and all(c.passed for c in checks)


_CONCEPT_PROOF = {"concept", "kind", "surrogate", "prompts", "seeds", "images", "ua", "ua_interval", "base_ua"}
_RETENTION_PROOF = {"group", "kind", "concepts", "prompts", "seeds", "images", "accuracy_base", "accuracy_erased",
                    "retention", "retention_interval"}


def proof(stored: dict[str, Any], fingerprint: str | None) -> dict[str, Any]:
    """What the certificate proves, in one place: the judge, the base model, the held-out images, the numbers."""
    metrics = ErasureMetrics.model_validate(stored)
    judge = metrics.judge
    if judge is None:
        raise CertificateRefused("the erasure's metrics hold no judge evidence: no certificate")
    return {
        "judge": judge.judge,
        "base_model_fingerprint": fingerprint,
        "heldout": judge.heldout,
        "sampling": {"steps": judge.steps, "guidance_scale": judge.guidance_scale},
        "concepts": [c.model_dump(mode="json", include=_CONCEPT_PROOF) for c in judge.concepts],
        "retention": [r.model_dump(mode="json", include=_RETENTION_PROOF) for r in judge.retention],
        "thresholds": metrics.thresholds.model_dump(mode="json") if metrics.thresholds else None,
        "not_proven": [
            "prompts other than the held-out prompts listed here",
            "white-box attacks on the weights or the text conditioning",
            "what a different judge would see",
        ],
    }


def body_digest(certificate: dict[str, Any]) -> str:
    """sha256 of the JCS bytes of the certificate without its `audit` member (what the audit event records)."""
    return hashlib.sha256(canonicalize({k: v for k, v in certificate.items() if k != "audit"})).hexdigest()


# What other domains state in a certificate: each returns top-level members for it (session, request). The
# model-versions domain registers `lineage` (core.versions.handlers).
STATEMENTS: list[Callable[[Session, ErasureRequest], dict[str, Any]]] = []


def build_certificate(
    session: Session, request: ErasureRequest, job: Job, artifacts: list[Artifact], *, issued_at: datetime,
) -> dict[str, Any]:
    """What the certificate states (without `audit`, added once the event is written), as plain JSON data."""
    model = session.get(RegisteredModel, request.model_id)
    statements: dict[str, Any] = {}
    for statement in STATEMENTS:
        statements.update(statement(session, request))
    lineage = statements.get("lineage") or {}
    certificate: dict[str, Any] = {
        "version": VERSION,
        "id": str(uuid.uuid4()),
        "issuer": "lethe",
        "issued_at": _iso(issued_at),
        "request": {
            "id": str(request.id),
            "method": request.method,
            "concepts": request.concepts,
            "retain": request.retain,
            "params": request.params,
            "legal": request.legal,
            "labels": request.labels,
            "submitted_by": request.submitted_by,
            "approved_by": request.approved_by,
            "submitted_at": _iso(request.created_at),
            "finished_at": _iso(request.finished_at or issued_at),
        },
        "model": {
            "id": str(request.model_id),
            "name": model.name if model else None,
            "architecture": model.architecture if model else None,
            # Erased from a model version: the weights before are that version's (core.versions).
            "fingerprint_before": lineage["base_fingerprint"] if lineage.get("model_version", 1) > 1 else (
                model.fingerprint if model else None),
        },
        **statements,
        "job": {
            "id": str(job.id),
            "attempt": job.attempt,
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
        },
        "artifacts": [
            {"name": a.name, "sha256": a.sha256, "size": a.size} for a in sorted(artifacts, key=lambda a: a.name)
        ],
        "proof": proof(request.metrics or {}, model.fingerprint if model else None),
        "verification": (request.metrics or {}).get("verification"),
        "metrics": request.metrics,
    }
    return to_json_data(certificate)


def issue(
    session: Session, request: ErasureRequest, job: Job, artifacts: list[Artifact], *,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Sign, store on the request (request.certificate) and audit a certificate; returns the document."""
    settings = settings or get_settings()
    if request.status != RequestStatus.succeeded or job.state != JobState.succeeded:
        raise CertificateRefused(
            f"request {request.id} is {request.status.value} (job {job.state.value}): only succeeded erasures "
            "get a certificate"
        )
    if not verification_passed(request.metrics):
        raise CertificateRefused(f"request {request.id} has no passed verification: no certificate")
    if not artifacts:
        raise CertificateRefused(f"request {request.id} produced no artifacts: no certificate")
    certificate = build_certificate(session, request, job, artifacts, issued_at=utcnow())
    event = audit.append(
        session, action="certificate.issued", subject=f"erasure:{request.id}", actor="system:certificates",
        tenant_id=request.tenant_id, payload={"certificate_id": certificate["id"], "digest": body_digest(certificate)},
    )
    certificate["audit"] = {"seq": event.seq, "hash": event.hash}
    document = sign_certificate(signing.private_key(settings), certificate)
    request.certificate = document
    return document


def sign_certificate(key: signing.Ed25519PrivateKey, certificate: dict[str, Any]) -> dict[str, Any]:
    """The certificate document: the JSON data and a detached JWS over its canonical form."""
    public = key.public_key()
    return {
        "certificate": certificate,
        "signature": {
            "alg": signing.ALG,
            "key_id": signing.key_id(public),
            "public_key": base64.b64encode(signing.public_raw(public)).decode(),
            "jws": signing.sign_detached(key, certificate),
        },
    }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    reason: str


def verify_document(document: Any, public: signing.Ed25519PublicKey | None = None) -> VerifyResult:
    """Check a certificate offline: structure, signature, and (if given) that the trusted key signed it."""
    if not isinstance(document, dict) or not isinstance(document.get("certificate"), dict) \
            or not isinstance(document.get("signature"), dict):
        return VerifyResult(False, "not a Lethe certificate (needs 'certificate' and 'signature')")
    sig = document["signature"]
    if sig.get("alg") == signing.ALG and isinstance(sig.get("jws"), str):
        try:
            header = signing.jws_header(sig["jws"])
        except ValueError:
            return VerifyResult(False, "the signature is not a detached compact JWS (header..signature)")
        if header.get("alg") != signing.ALG:
            return VerifyResult(False, f"unsupported JWS algorithm {header.get('alg')!r}")
    elif not (sig.get("alg") == signing.LEGACY_ALG and isinstance(sig.get("value"), str)):
        return VerifyResult(False, f"unsupported signature algorithm {sig.get('alg')!r}")
    try:
        embedded = signing.load_public_key(str(sig.get("public_key", "")))
    except ValueError:
        return VerifyResult(False, "the certificate's public key is malformed")
    if public is not None and signing.public_raw(public) != signing.public_raw(embedded):
        return VerifyResult(False, "signed by a different key than the trusted one "
                                   f"(certificate key id {sig.get('key_id')}, trusted {signing.key_id(public)})")
    key = public or embedded
    if "jws" in sig:
        valid = signing.verify_detached(key, sig["jws"], document["certificate"])
    else:
        valid = signing.verify_legacy(key, document["certificate"], sig["value"])
    if not valid:
        return VerifyResult(False, "the signature does not match the certificate's content (altered or forged)")
    return VerifyResult(True, f"valid: signed by key {signing.key_id(key)}")
