"""Webhook endpoint input/output."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.webhooks.signing import check_secret

EVENT_TYPES = (
    "erasure.submitted", "erasure.succeeded", "erasure.failed", "erasure.cancelled", "erasure.overdue",
    "model.validated", "schedule.ran",
)


class WebhookCreate(BaseModel):
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
