"""Request and response bodies of erasure requests.

`ErasureParams` bounds every engine knob a caller may set. The bounds match (are within) the engine's own
`core.spare.specs.SpareConfig` / `EsdConfig`, so anything accepted here is accepted by the engine;
tests/unit/test_api_schemas.py checks that they stay compatible.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator, model_validator

from core.erasure.states import RequestStatus
from core.evaluation.evidence_schema import JudgeEvidence
from core.timeutil import AwareUtcTimestamp
from core.validation import RequestModel

ConceptKind = Literal["object", "style", "identity", "custom"]
Method = Literal["spare", "esd"]
Regime = Literal["gdpr", "dmca", "dsa", "contract", "policy", "other"]

# The neutral prompt a concept turns into when the request names no surrogate (same table as the engine's
# core.spare.specs.NEUTRAL_SURROGATE: "something of the same kind", not a hole the model has never seen).
DEFAULT_SURROGATES: dict[str, str] = {"object": "object", "style": "plain", "identity": "a person", "custom": ""}

PromptText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._:/-]*$")]

# Parameters that only one method understands.
SPARE_ONLY = frozenset({"rank", "alpha", "saliency_fraction", "saliency_pool", "top_k", "max_modules",
                        "w_forget", "w_retain", "timesteps", "forget_anchor",
                        "adversarial_steps"})
ESD_ONLY = frozenset({"negative_guidance", "train"})
ENGINE_DEFAULT_MAX_MODULES = 64


class ErasureParams(BaseModel):
    """Bounded engine parameters; omitted ones take the engine's defaults (core.spare.specs; the table in
    docs/configuration.md is generated from both), deliberately not repeated here so they cannot drift."""

    # Strict: a number is a JSON number ("10" and true are not integers).
    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [{"steps": 200, "rank": 4, "seed": 7}]})

    steps: int | None = Field(default=None, ge=1, le=20000, description="Training steps.")
    lr: float | None = Field(default=None, gt=0, le=1.0, description="Learning rate.")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="Seed for samples, noise, timesteps.")
    batch_size: int | None = Field(default=None, ge=1, le=64, description="Noisy latents per loss term and step.")
    sample_steps: int | None = Field(default=None, ge=1, le=200, description="Denoising steps for samples.")
    guidance_scale: float | None = Field(default=None, ge=1.0, le=30.0, description="CFG scale for samples.")
    max_rounds: int | None = Field(
        default=None, ge=1, le=10,
        description="Erase until verified: rounds of train → held-out image check → escalate, at most (default: "
        "the service's LETHE_ERASE_MAX_ROUNDS; 1 = a single round).",
    )
    time_budget_s: float | None = Field(
        default=None, gt=0, le=86400,
        description="Erase until verified: no further round starts past this many seconds (default: the "
        "service's LETHE_ERASE_TIME_BUDGET_SECONDS).",
    )
    # SPARE
    rank: int | None = Field(default=None, ge=1, le=128, description="SPARE: LoRA rank.")
    alpha: float | None = Field(default=None, gt=0, le=512, description="SPARE: LoRA alpha (default = rank).")
    saliency_fraction: float | None = Field(
        default=None, gt=0, le=1.0, description="SPARE: share of total saliency the selected modules hold."
    )
    saliency_pool: Literal["cross_kv", "cross_attention", "attention", "all"] | None = Field(
        default=None, description="SPARE: which modules compete for saliency."
    )
    top_k: int | None = Field(default=None, ge=1, le=4096, description="SPARE: keep exactly the k most salient.")
    max_modules: int | None = Field(default=None, ge=1, le=4096, description="SPARE: upper bound on modules.")
    w_forget: float | None = Field(default=None, ge=0, le=100, description="SPARE: forget loss weight.")
    w_retain: float | None = Field(default=None, ge=0, le=100, description="SPARE: retain loss weight.")
    timesteps: Literal["concept", "uniform"] | None = Field(default=None, description="SPARE: timestep sampling.")
    forget_anchor: Literal["concept", "surrogate", "both"] | None = Field(
        default=None, description="SPARE: clean latents the forget term is noised from."
    )
    adversarial_steps: int | None = Field(
        default=None, ge=0, le=10, description="SPARE: adversary steps per distillation step (0 = off)."
    )
    # ESD
    negative_guidance: float | None = Field(default=None, ge=0, le=20, description="ESD: eta.")
    train: Literal["xattn", "noxattn"] | None = Field(
        default=None, description="ESD: ESD-x (cross-attention) or ESD-u (everything but cross-attention)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ErasureParams:
        # The engine's default max_modules is 64: a larger top_k alone would be refused when the job runs.
        if self.top_k is not None and self.top_k > (self.max_modules or ENGINE_DEFAULT_MAX_MODULES):
            raise ValueError("top_k exceeds max_modules (default 64)")
        return self

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ErasureParamsOut(ErasureParams):
    """The parameters a request was filed with (keys a later version no longer knows are kept)."""

    model_config = ConfigDict(extra="allow")


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
    params: ErasureParams = Field(default_factory=ErasureParams)
    verification: VerificationIn | None = None
    legal: Legal | None = None
    priority: int = Field(default=0, ge=0, le=9, strict=True, description="Higher runs first.")
    labels: list[Label] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _check(self) -> ErasureCreate:
        targets = [c.target.lower() for c in self.concepts]
        if len(set(targets)) != len(targets):
            raise ValueError("a concept is listed twice")
        given = set(self.params.given())
        foreign = given & (ESD_ONLY if self.method == "spare" else SPARE_ONLY)
        if foreign:
            raise ValueError(f"params {sorted(foreign)} do not apply to method '{self.method}'")
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


class VerificationCheck(BaseModel):
    """One verification check: the measured value, the threshold in force (`min` or `max`), the outcome."""

    model_config = ConfigDict(extra="allow")

    value: float
    min: float | None = None
    max: float | None = None
    passed: bool


class ErasureMetrics(BaseModel):
    """What the evaluator measured. The keys depend on the model and evaluator (the testbed reports
    `testbed` and `summary`; any model reports noise-space numbers such as `forget_gap_closure`), so members
    other than `verification` are open."""

    model_config = ConfigDict(extra="allow")

    verification: dict[str, VerificationCheck] | None = Field(
        default=None, description="Each check by name; a request only succeeds when all passed and at least one "
        "is a judge's verdict on held-out images (`evidence: image`)."
    )
    judge: JudgeEvidence | None = Field(
        default=None, description="The judge's held-out evidence: judge name and version, per erased concept the "
        "prompts, seeds, images, UA with its 95 % interval; retention groups; seconds.",
    )


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
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
