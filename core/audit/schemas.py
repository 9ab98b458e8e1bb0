"""Response bodies of the audit API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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
    ok: bool = Field(description="True when every hash and link recomputes.")
    checked: int = Field(description="Events verified before the first break (all of them when ok).")
    first_broken_seq: int | None = Field(description="The first event whose link or content does not match.")
