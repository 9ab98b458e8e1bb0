"""Response bodies of the audit API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    tenant_id: uuid.UUID | None
    actor: str
    action: str
    subject: str
    payload: dict[str, Any] = Field(description="What the action recorded; its members depend on `action`.")
    prev_hash: str
    hash: str


class ChainReportOut(BaseModel):
    ok: bool = Field(description="True when the chain recomputes from its newest signed checkpoint on and still "
                     "reaches every signed checkpoint.")
    checked: int = Field(description="The calling tenant's events in the verified chain (the chain's size, which "
                         "counts every tenant's events, is not disclosed).")
    first_broken_seq: int | None = Field(description="The first event whose link or content does not match, or "
                                         "the first one missing; null when ok.")
    problem: Literal["altered", "truncated", "checkpoint-forged"] | None = Field(
        default=None, description="altered: an event does not recompute or link; truncated: events a signed "
        "checkpoint covered are gone; checkpoint-forged: a checkpoint lacks this service's signature.",
    )
    checkpoint_at: datetime | None = Field(
        default=None, description="When the signed checkpoint that now covers the chain's head was made.",
    )
