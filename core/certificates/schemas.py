"""The certificate document as the API serves it (documentation and generated clients).

Every object allows members beyond those listed: new certificate versions add fields, and a verifier must keep
every member it received — the signature covers the whole `certificate` object, byte for byte after RFC 8785.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.erasure.outcome import ErasureMetrics, VerificationCheck
from core.erasure.params import ErasureParamsOut, with_method
from core.erasure.schemas import ConceptOut, LegalOut


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class CertifiedRequest(_Open):
    id: str
    method: str
    concepts: list[ConceptOut]
    retain: list[str] | None = None
    params: ErasureParamsOut | None = None
    legal: LegalOut | None = None
    labels: list[str] | None = None
    submitted_by: str
    approved_by: str | None = None
    submitted_at: str | None = Field(default=None, description="ISO 8601.")
    finished_at: str | None = Field(default=None, description="ISO 8601.")

    @model_validator(mode="before")
    @classmethod
    def _params_method(cls, data: Any) -> Any:
        return with_method(data) if isinstance(data, dict) and data.get("params") is not None else data


class CertifiedModel(_Open):
    id: str
    name: str | None = None
    source_uri: str | None = None
    architecture: str | None = None
    fingerprint_before: str | None = Field(default=None, description="sha256 over the weight files before.")


class CertifiedJob(_Open):
    id: str
    attempt: int
    started_at: str | None = None
    finished_at: str | None = None


class CertifiedArtifact(_Open):
    name: str
    sha256: str
    size: int


class CertificateAudit(_Open):
    seq: int = Field(description="The `certificate.issued` audit event.")
    hash: str = Field(description="That event's chain hash.")


class LineageConcept(_Open):
    target: str
    kind: str
    version: int | None = Field(description="The version whose erasure removed it (null: this erasure).")
    erasure_id: str
    ua: float | None = Field(default=None, description="This erasure's fresh held-out measurement of it.")
    ua_interval: list[float] | None = None
    images: int | None = None
    passed: bool | None = Field(default=None, description="Its UA check passed (same judge and thresholds).")


class CertifiedLineage(_Open):
    model_version: int = Field(description="The model version the erasure ran on (1: the source).")
    base_fingerprint: str | None = Field(default=None, description="sha256 over that version's weight files.")
    previous_certificate_sha256: str | None = Field(
        default=None, description="sha256 of the RFC 8785 canonical JSON of the certificate document of the "
        "erasure that made `model_version` (null on version 1): the chain `lethe certificate verify --chain` walks.")
    retention_against_version: int = Field(description="Retention is measured against this version (1).")
    erased_concepts: list[LineageConcept] = Field(description="Every concept erased so far, measured again.")


class Certificate(_Open):
    version: int = Field(description="2: JWS over RFC 8785 canonical JSON; 1: Ed25519 over sorted-key JSON.")
    id: str
    issuer: str
    issued_at: str = Field(description="ISO 8601.")
    tenant_id: str | None = None
    request: CertifiedRequest
    model: CertifiedModel
    job: CertifiedJob
    artifacts: list[CertifiedArtifact]
    verification: dict[str, VerificationCheck] | None = None
    metrics: ErasureMetrics | None = None
    audit: CertificateAudit | None = None
    lineage: CertifiedLineage | None = None


class CertificateSignature(_Open):
    alg: str = Field(description="`EdDSA` (Ed25519, JWS); `Ed25519` for version-1 certificates.",
                     examples=["EdDSA"])
    key_id: str = Field(description="First 16 hex chars of sha256 over the raw public key.")
    public_key: str = Field(description="The signer's raw 32-byte Ed25519 public key, base64.")
    jws: str | None = Field(
        default=None,
        description="Compact JWS with a detached payload, `BASE64URL(header)..BASE64URL(signature)` (RFC 7515 "
        "Appendix F). The payload is the RFC 8785 (JCS) canonical JSON of `certificate`: the signing input is "
        "`BASE64URL(header) + '.' + BASE64URL(JCS(certificate))`.",
    )
    value: str | None = Field(default=None, description="Version 1 only: base64 Ed25519 signature.")


class CertificateDocument(BaseModel):
    certificate: Certificate
    signature: CertificateSignature


class PublicJwk(BaseModel):
    kty: str = Field(examples=["OKP"])
    crv: str = Field(examples=["Ed25519"])
    x: str = Field(description="The raw public key, base64url.")
    kid: str
    alg: str = Field(examples=["EdDSA"])


class PublicKeyOut(BaseModel):
    alg: str = Field(examples=["EdDSA"], description="The JWS algorithm of certificate signatures.")
    key_id: str = Field(description="First 16 hex chars of sha256 over the raw public key (the JWS `kid`).")
    public_key: str = Field(description="Raw 32-byte public key, base64.")
    public_key_pem: str = Field(description="SubjectPublicKeyInfo PEM (`lethe certificate verify --public-key`, "
                                            "`openssl pkeyutl -verify -pubin -inkey`).")
    jwk: PublicJwk = Field(description="The same key as a JWK (RFC 8037) for JOSE libraries.")
