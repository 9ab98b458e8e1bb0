"""Erasure requests. The jobs that execute them and the artifacts jobs produce live in `core.jobs.models`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, Uuid, false
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JsonType, UtcDateTime
from core.erasure.states import RequestStatus
from core.ids import new_id
from core.jobs.models import state_enum as _enum
from core.timeutil import utcnow


class ErasureRequest(Base):
    __tablename__ = "erasure_requests"
    __table_args__ = (Index("ix_erasure_requests_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id"), index=True)
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus, "request_status"), index=True)
    method: Mapped[str] = mapped_column(String(16), default="spare")
    concepts: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    retain: Mapped[list[str]] = mapped_column(JsonType, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    # What the request asked of verification: {"judge", "min_unlearning_accuracy", "min_retention"} (all optional).
    verification: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    legal: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    labels: Mapped[list[str]] = mapped_column(JsonType, default=list)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    # Actor ids (API key ids, or "system:<component>").
    submitted_by: Mapped[str] = mapped_column(String(100))
    approved_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    certificate: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    # The model version the erasure runs on (core.versions); NULL for requests older than versions (v1).
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A rebased request: the request it re-runs on a newer head.
    rebased_from: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    # A chained request (core.erasure.chain): it runs on the version the request it names made, once that
    # version is stored; until then it is `waiting` and its `model_version` is NULL.
    after_request_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("erasure_requests.id"), nullable=True, index=True
    )
    # Apply it as the model's next version when it succeeds, whatever the model's `auto_apply` says.
    apply_on_success: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
