"""Webhook endpoint input/output."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from core.validation import RequestModel
from core.webhooks.signing import check_secret

EVENT_TYPES = (
    "erasure.submitted", "erasure.succeeded", "erasure.failed", "erasure.cancelled", "erasure.overdue",
    "model.validated", "model.version.created", "model.head.moved", "schedule.ran",
)


class WebhookCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"url": "https://hooks.example.com/lethe",
                                         "events": ["erasure.succeeded", "erasure.failed"]}]},
    )

    url: str = Field(max_length=2000, description="http(s) URL that receives POSTed events.")
    events: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=len(EVENT_TYPES) + 1,
        description=f"Event types to receive, or ['*'] for all. Known: {', '.join(EVENT_TYPES)}.",
    )
    secret: str | None = Field(
        default=None, max_length=200, description="Standard Webhooks secret (whsec_...); generated when omitted."
    )
    description: str | None = Field(default=None, max_length=500)

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if e != "*" and e not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
        return list(dict.fromkeys(value))

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return None if value is None else check_secret(value)


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str | None = Field(
        description="The signing secret. Shown only in the first response; null when an Idempotency-Key replay "
        "answers (the stored response does not keep it)."
    )


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: str
    event_type: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    log: list[AttemptOut]


class WebhookList(BaseModel):
    items: list[WebhookOut]


# ---- what each event POSTs: {type, timestamp, data} (documented in the OpenAPI `webhooks` section) --------


class ErasureSucceededData(BaseModel):
    request_id: uuid.UUID
    job_id: uuid.UUID
    status: Literal["succeeded"]


class ErasureFailedData(BaseModel):
    request_id: uuid.UUID
    job_id: uuid.UUID
    status: Literal["failed"]
    error: str | None = Field(description="Why it failed.")


class ErasureCancelledData(BaseModel):
    request_id: uuid.UUID
    job_id: uuid.UUID | None = Field(description="The job that stopped; null for a chained request cancelled "
                                     "before it had one.")
    status: Literal["cancelled"]
    error: str | None = Field(default=None, description="Why, when Lethe cancelled it: the request it runs "
                              "after failed, was cancelled or rejected, or was not made a version.")


class ErasureOverdueData(BaseModel):
    request_id: uuid.UUID
    status: str = Field(description="The request's status when its deadline passed.")
    due_at: datetime | None


class ModelValidatedData(BaseModel):
    model_id: uuid.UUID
    status: str = Field(description="`ready` or `failed`.")
    architecture: str | None
    fingerprint: str | None = Field(description="sha256 over the weight files (when ready).")
    reason: str | None = Field(description="Why validation failed.")


class ModelVersionCreatedData(BaseModel):
    model_id: uuid.UUID
    version: int
    parent: int | None
    erasure_id: uuid.UUID | None
    status: str = Field(description="`ready` (files stored) or `failed` (with `reason`).")
    fingerprint: str | None
    reason: str | None = None


class ModelHeadMovedData(BaseModel):
    model_id: uuid.UUID
    previous: int = Field(description="The head before.")
    head: int = Field(description="The head now: new erasures run on it.")
    reason: str = Field(description="Why: `version N applied`, a rollback's stated reason, `version N failed`.")


class ScheduleRanData(BaseModel):
    schedule_id: uuid.UUID
    slot_at: datetime
    batch_id: uuid.UUID | None
    requests: int | None = Field(description="Requests the slot's batch created.")
    error: str | None


class _Event(BaseModel):
    timestamp: datetime = Field(description="When the event happened.")


def _event(name: str, event_type: str, data: type[BaseModel], doc: str) -> type[BaseModel]:
    return create_model(name, __base__=_Event, __doc__=doc,
                        type=(Literal[event_type], Field(description="The event type.")), data=(data, ...))


# Every event type that is delivered, with its payload model and when it is sent (erasure.submitted is
# accepted in subscriptions but not delivered: the hot path of submissions writes no outbox row for it).
WEBHOOK_EVENTS: dict[str, tuple[type[BaseModel], str]] = {
    t: (_event(n, t, d, w), w) for t, n, d, w in (
        ("erasure.succeeded", "ErasureSucceededEvent", ErasureSucceededData,
         "The erasure ran and passed verification; its certificate is issued."),
        ("erasure.failed", "ErasureFailedEvent", ErasureFailedData,
         "The erasure failed for good (after its attempts, or verification failed)."),
        ("erasure.cancelled", "ErasureCancelledEvent", ErasureCancelledData,
         "A running job stopped after a cancel, or a chained request was cancelled because the request it "
         "runs after did not become a version."),
        ("erasure.overdue", "ErasureOverdueEvent", ErasureOverdueData,
         "`legal.due_at` passed and the request is not finished."),
        ("model.validated", "ModelValidatedEvent", ModelValidatedData, "A model's validation job finished."),
        ("model.version.created", "ModelVersionCreatedEvent", ModelVersionCreatedData,
         "An applied erasure's version has its files stored (ready), or storing them failed."),
        ("model.head.moved", "ModelHeadMovedEvent", ModelHeadMovedData,
         "The model's head moved: a version was applied, or someone rolled back or forward."),
        ("schedule.ran", "ScheduleRanEvent", ScheduleRanData, "A schedule's slot ran (once per slot)."),
    )
}
