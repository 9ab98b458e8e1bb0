"""Request and response bodies of model versions."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from core.certificates.schemas import CertificateDocument
from core.validation import RequestModel
from core.versions.models import VersionStatus


class VersionApply(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"erasure_id": "0f8fad5b-d9cb-469f-a165-70867728950e"}]})

    erasure_id: uuid.UUID = Field(description="A succeeded erasure that ran on the model's head.")


class HeadMove(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"version": 2, "reason": "v3 degraded product shots; roll back while we investigate"}]})

    version: int = Field(ge=1, le=1_000_000, strict=True, description="A ready version of the model.")
    reason: str = Field(min_length=1, max_length=2000, description="Why the head moves (audited).")


class ErasedConcept(BaseModel):
    target: str
    kind: str
    surrogate: str | None = Field(default=None, description="What the erasure's kept round trained it toward.")
    version: int = Field(description="The version whose erasure removed it.")
    erasure_id: uuid.UUID


class VersionArtifact(BaseModel):
    name: str = Field(examples=["fused/unet/diffusion_pytorch_model.safetensors"],
                      description="As in an erasure's artifact set: fused/... (the whole pipeline), adapter/... "
                      "(one LoRA relative to v1).")
    size: int
    sha256: str
    url: str | None = Field(default=None, description="Expiring download link.")


class AdapterInfo(BaseModel):
    exact: bool = Field(description="Loading adapter/ on v1 reproduces fused/ (concatenated LoRA factors).")
    rank: int | None = None
    reason: str | None = Field(default=None, description="Why there is no exact adapter (fused weights only).")


class VersionOut(BaseModel):
    number: int
    parent: int | None = Field(description="The version it was made from (null for v1, the source).")
    erasure_id: uuid.UUID | None = Field(description="The erasure that made it (null for v1).")
    status: VersionStatus = Field(description="pending while its files are stored; then ready (or failed).")
    status_reason: str | None
    head: bool = Field(description="New erasures run on this version unless they name another.")
    erased_concepts: list[ErasedConcept] = Field(description="Every concept erased in v2..this version.")
    artifacts: list[VersionArtifact]
    fingerprint: str | None = Field(description="sha256 over the weight files.")
    adapter: AdapterInfo | None
    certificate_sha256: str | None = Field(
        description="sha256 of the RFC 8785 canonical JSON of the erasure's certificate document "
        "(the next version's certificate links to it).")
    certificate: CertificateDocument | None = Field(
        default=None, description="The certificate document of the erasure that made this version, exactly as "
        "signed (GET .../versions/{number} only; null in lists).")
    created_by: str
    created_at: datetime


class VersionList(BaseModel):
    head: int
    items: list[VersionOut]
