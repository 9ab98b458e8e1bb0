"""Request and response bodies of erasure requests.

`params` is the engine's own configuration, derived in core.erasure.params from core.spare.specs (one
definition per knob): a union discriminated by the request's `method`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator, model_validator

from core.erasure.outcome import ErasureMetrics
from core.erasure.params import ErasureParams, ErasureParamsOut, Method, SpareParams, with_method
from core.erasure.states import RequestStatus
from core.spare.specs import NEUTRAL_SURROGATE, ConceptKind
from core.timeutil import AwareUtcTimestamp
from core.validation import RequestModel

Regime = Literal["gdpr", "dmca", "dsa", "contract", "policy", "other"]

# The neutral prompt a concept turns into when the request names no surrogate: the engine's table.
DEFAULT_SURROGATES: dict[str, str] = NEUTRAL_SURROGATE

PromptText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._:/-]*$")]


def check_params_method(method: str, params: Any) -> None:
    if params.method != method:
        raise ValueError(f"params are for method '{params.method}' but the request's method is '{method}'")


class ConceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(min_length=1, max_length=200, description="The concept as text, e.g. 'Van Gogh'.")
    surrogate: str | None = Field(
        default=None, max_length=200,
        description="What the concept should turn into; default: a neutral prompt chosen per kind.",
    )
    kind: ConceptKind = Field(default="object")
    prompts: list[PromptText] = Field(
        default_factory=list, max_length=32, description="Example prompts in which the concept appears."
    )
    example_images: list[uuid.UUID] = Field(
        default_factory=list, max_length=64, description="Ids of uploaded images of the concept (POST /v1/uploads)."
    )

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the concept to erase is empty")
        return value

    @model_validator(mode="after")
    def _surrogate_differs(self) -> ConceptIn:
        if self.surrogate is not None and self.surrogate.strip().lower() == self.target.lower():
            raise ValueError("the surrogate equals the target: nothing would be erased")
        if any(not p.strip() for p in self.prompts):
            raise ValueError("an example prompt is blank")
        return self


class Requester(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    organization: str | None = Field(default=None, max_length=200)


class Legal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    regime: Regime
    basis: str = Field(min_length=1, max_length=4000, description="The legal basis, e.g. 'Art. 17 GDPR'.")
    external_reference: str | None = Field(default=None, max_length=200, description="Ticket or notice id.")
    requester: Requester | None = None
    received_at: AwareUtcTimestamp | None = None
    due_at: AwareUtcTimestamp | None = Field(
        default=None, description="Deadline; GET /v1/erasures?due_before= finds it."
    )


_EXAMPLE: dict[str, Any] = {
    "model_id": "6f1c1f2e-8a43-4f0e-9d4e-2d1b7c5b9a10",
    "concepts": [
        {
            "target": "Van Gogh",
            "kind": "style",
            "surrogate": "a plain painting",
            "prompts": ["a starry night in the style of Van Gogh"],
        }
    ],
    "method": "spare",
    "params": {"steps": 200, "rank": 4, "seed": 7},
    "legal": {
        "regime": "dmca",
        "basis": "17 U.S.C. § 512(c) takedown notice",
        "external_reference": "DMCA-2026-0042",
        "requester": {"name": "Jane Doe", "email": "legal@example.com", "organization": "Example Estate"},
        "received_at": "2026-11-28T09:00:00Z",
        "due_at": "2026-12-05T09:00:00Z",
    },
    "priority": 5,
    "labels": ["takedown", "q4"],
}


class VerificationIn(RequestModel):
    """How this request's erasure is proven. Thresholds may only be raised above the service minimum."""

    model_config = ConfigDict(extra="forbid")

    judge: Literal["auto", "model-classifier", "clip", "diffusion-classifier"] | None = Field(
        default=None, description="Who labels the held-out images; auto (the service default) picks the best one.",
    )
    min_unlearning_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="Per erased concept UA on held-out images; at least the service minimum.",
    )
    min_retention: float | None = Field(
        default=None, ge=0, le=1, description="Retention of other concepts relative to the base model; at least the "
        "service minimum.",
    )

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ErasureCreate(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    model_id: uuid.UUID
    concepts: list[ConceptIn] = Field(min_length=1, max_length=16)
    retain: list[PromptText] = Field(
        default_factory=list, max_length=64, description="Prompts that must not change; derived when empty."
    )
    method: Method = "spare"
    params: ErasureParams = Field(
        default_factory=SpareParams,
        description="Engine parameters of the request's method; `method` inside them is optional (set from the "
        "request's).", json_schema_extra={"examples": [{"steps": 200, "rank": 4, "seed": 7}]},
    )
    verification: VerificationIn | None = None
    legal: Legal | None = None
    priority: int = Field(default=0, ge=0, le=9, strict=True, description="Higher runs first.")
    labels: list[Label] = Field(default_factory=list, max_length=20)
    model_version: int | None = Field(
        default=None, ge=1, le=1_000_000, strict=True,
        description="The model version to erase from (GET /v1/models/{id}/versions); default: the model's head.",
    )

    @model_validator(mode="before")
    @classmethod
    def _params_method(cls, data: Any) -> Any:
        return with_method(data)

    @model_validator(mode="after")
    def _check(self) -> ErasureCreate:
        targets = [c.target.lower() for c in self.concepts]
        if len(set(targets)) != len(targets):
            raise ValueError("a concept is listed twice")
        check_params_method(self.method, self.params)
        return self


class DecisionIn(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "notice is incomplete"}]})

    reason: str = Field(min_length=1, max_length=2000)


class ArtifactOut(BaseModel):
    name: str = Field(examples=["fused/unet/diffusion_pytorch_model.safetensors"])
    size: int = Field(description="Bytes.")
    sha256: str


class ArtifactLink(ArtifactOut):
    url: str = Field(description="Download link: S3 presigned, or a signed link into this API (/v1/objects/...).")


class ArtifactLinks(BaseModel):
    request_id: uuid.UUID
    attempt: int = Field(description="The job attempt whose outputs these are.")
    expires_in_s: int = Field(description="Seconds each link stays valid (LETHE_ARTIFACT_URL_TTL_S).")
    artifacts: list[ArtifactLink]


class ConceptOut(BaseModel):
    """A concept as the request stores it: the surrogate resolved to the default for its kind when omitted."""

    model_config = ConfigDict(extra="allow")

    target: str
    surrogate: str
    kind: ConceptKind
    prompts: list[str]
    example_images: list[uuid.UUID]


class RequesterOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    email: str | None = None
    organization: str | None = None


class LegalOut(BaseModel):
    """The `legal` block as submitted."""

    model_config = ConfigDict(extra="allow")

    regime: Regime
    basis: str
    external_reference: str | None = None
    requester: RequesterOut | None = None
    received_at: datetime | None = None
    due_at: datetime | None = None


class ErasureOut(BaseModel):
    id: uuid.UUID
    model_id: uuid.UUID
    status: RequestStatus
    stage: str | None = Field(description="What the running job is doing.")
    progress: float = Field(ge=0, le=1)
    attempts: int = Field(description="Attempts the job has started.")
    cancel_requested: bool
    method: Method
    concepts: list[ConceptOut]
    retain: list[str]
    params: ErasureParamsOut
    verification: VerificationIn | None = Field(default=None, description="What the request asked of verification.")
    legal: LegalOut | None
    priority: int
    labels: list[str]
    batch_id: uuid.UUID | None
    schedule_id: uuid.UUID | None
    submitted_by: str
    approved_by: str | None
    decision_reason: str | None
    metrics: ErasureMetrics | None
    error: str | None
    due_at: datetime | None
    overdue: bool
    artifacts: list[ArtifactOut] = Field(
        description="Outputs of a succeeded request (name, size, sha256); empty in lists and until it succeeds. "
        "Download links: POST /v1/erasures/{id}/artifact-links."
    )
    certificate_available: bool
    model_version: int | None = Field(
        default=None, description="The model version the erasure runs on (null: requests older than versions, v1).")
    rebased_from: uuid.UUID | None = Field(
        default=None, description="The request this one re-runs on a newer head (POST /v1/erasures/{id}/rebase).")
    after_request_id: uuid.UUID | None = Field(
        default=None, description="A chained request (a batch with `combined: false`): it runs on the version "
        "this request makes, and is `waiting` (with `model_version` null) until that version is stored.")
    apply_on_success: bool = Field(
        default=False, description="It becomes the model's next version when it succeeds (every request of a "
        "chain), whatever the model's `auto_apply` says.")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @model_validator(mode="before")
    @classmethod
    def _params_method(cls, data: Any) -> Any:
        return with_method(data)
