"""Batch submissions: one erasure body applied to many models (chosen by id, tag, or all ready models), as
one combined erasure per model or as a chain of one erasure per concept."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.erasure.params import ErasureParams, SpareParams, with_method
from core.erasure.schemas import ConceptIn, ErasureCreate, Label, Legal, Method, PromptText, check_params_method
from core.erasure.states import RequestStatus
from core.validation import RequestModel


class ModelSelector(BaseModel):
    """Exactly one of: explicit ids, a tag, or every ready model of the tenant."""

    model_config = ConfigDict(extra="forbid")

    ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=100)
    tag: str | None = Field(default=None, min_length=1, max_length=64)
    all_ready: bool = Field(default=False, description="Every model of the tenant whose status is ready.")

    @model_validator(mode="after")
    def _one(self) -> ModelSelector:
        chosen = sum([self.ids is not None, self.tag is not None, self.all_ready])
        if chosen != 1:
            raise ValueError("choose models by exactly one of: ids, tag, all_ready")
        return self


_EXAMPLE = {
    "models": {"tag": "production"},
    "concepts": [{"target": "Van Gogh", "kind": "style"}, {"target": "Mickey Mouse", "kind": "object"}],
    "legal": {"regime": "dmca", "basis": "17 U.S.C. 512(c)", "external_reference": "DMCA-1234",
              "requester": {"name": "Jane Roe", "email": "legal@example.com", "organization": "Example Corp"},
              "received_at": "2026-11-28T09:00:00Z", "due_at": "2026-12-05T09:00:00Z"},
}


class BatchCreate(RequestModel):
    """An erasure body (as POST /v1/erasures, without model_id) plus a model selector."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    models: ModelSelector
    concepts: list[ConceptIn] = Field(min_length=1, max_length=16, description="As in POST /v1/erasures.")
    retain: list[PromptText] = Field(default_factory=list, max_length=64)
    method: Method = "spare"
    params: ErasureParams = Field(default_factory=SpareParams, description="As in POST /v1/erasures.")
    legal: Legal | None = None
    priority: int = Field(default=0, ge=0, le=9)
    labels: list[Label] = Field(default_factory=list, max_length=20)
    combined: bool = Field(
        default=True,
        description="true: per model one request with every concept — one erasure, which makes one version when "
        "applied. false: per model one request per concept, in the order given, chained: each runs on the "
        "version the one before it made, once that version is stored, and each is applied as the model's "
        "next version when it succeeds — one version per concept. When one fails, is cancelled or rejected, "
        "or cannot be applied, the rest of its chain is cancelled with an error naming it.",
    )

    def for_model(self, model_id: uuid.UUID, concepts: list[ConceptIn] | None = None) -> ErasureCreate:
        """The single-model erasure body (validated exactly as POST /v1/erasures validates it); `concepts`: a
        part of the batch's concepts (one request of a chain)."""
        body = self.model_dump(exclude={"models", "combined"}, exclude_unset=True, mode="json")
        if concepts is not None:
            body["concepts"] = [c.model_dump(mode="json", exclude_unset=True) for c in concepts]
        return ErasureCreate.model_validate({"model_id": model_id, **body})

    def per_model(self, model_id: uuid.UUID) -> list[ErasureCreate]:
        """The model's requests in order: one with every concept, or one per concept (`combined: false`)."""
        if self.combined:
            return [self.for_model(model_id)]
        return [self.for_model(model_id, [concept]) for concept in self.concepts]

    @model_validator(mode="before")
    @classmethod
    def _params_method(cls, data: Any) -> Any:
        return with_method(data)

    @model_validator(mode="after")
    def _valid_erasure(self) -> BatchCreate:
        check_params_method(self.method, self.params)
        self.for_model(uuid.UUID(int=0))  # raises with the same messages as a single submission
        if not self.combined:
            self.per_model(uuid.UUID(int=0))  # and as each request of the chain
        return self


class BatchRequestOut(BaseModel):
    id: uuid.UUID
    model_id: uuid.UUID
    status: RequestStatus
    error: str | None
    targets: list[str] = Field(description="The concepts it erases.")
    model_version: int | None = Field(description="The version it runs on (null: waiting for the one before it).")
    after_request_id: uuid.UUID | None = Field(description="The request it runs after (`combined: false`).")


class BatchOut(BaseModel):
    id: uuid.UUID
    schedule_id: uuid.UUID | None
    created_at: datetime
    size: int = Field(description="Requests in the batch.")
    combined: bool = Field(description="One request per model (true), or a chain per model (false).")
    status: str = Field(description="in_progress | succeeded | failed | partial | cancelled")
    counts: dict[str, int] = Field(description="Requests per status.")
    requests: list[BatchRequestOut] = Field(description="Every request; a chain's in the order they run.")
