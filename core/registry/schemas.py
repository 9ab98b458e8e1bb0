"""Request and response bodies of the model registry."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.registry.models import ModelStatus
from core.validation import RequestModel

Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]


class ModelCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "sd15-prod",
                    "source_uri": "file:///srv/lethe/models/sd15",
                    "description": "Stable Diffusion 1.5 as deployed in the image service",
                    "tags": ["sd15", "prod"],
                }
            ]
        },
    )

    name: str = Field(
        min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$",
        description="Unique per tenant.",
    )
    source_uri: str = Field(
        min_length=1, max_length=1000,
        description="file:///path under LETHE_MODEL_ROOTS, s3://bucket/prefix in the configured store, "
        "or hf://org/repo@revision when hub access is enabled.",
    )
    description: str | None = Field(default=None, max_length=2000)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    auto_apply: bool = Field(default=False, description="Apply every succeeded erasure that ran on the head "
                             "as the next version, at once (unattended pipelines).")


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    source_uri: str
    description: str | None
    tags: list[str]
    status: ModelStatus = Field(description="pending until the validation job ran; then ready or invalid.")
    status_reason: str | None = Field(description="Why the model is invalid.")
    architecture: str | None = Field(description="sd1 | sd2 | sdxl (filled by validation).")
    fingerprint: str | None = Field(description="sha256 over the weight files (filled by validation).")
    created_at: datetime
    updated_at: datetime
    validated_at: datetime | None
    head_version: int = Field(description="The version new erasures run on (GET /v1/models/{id}/versions).")
    auto_apply: bool = Field(description="Succeeded erasures on the head are applied as the next version at once.")


class ModelSettings(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"auto_apply": True}]})

    auto_apply: bool = Field(description="Apply every succeeded erasure that ran on the head, at once.")
