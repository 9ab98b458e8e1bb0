"""Registered base models that erasures run against."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Boolean, Enum, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid, false, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JsonType, UtcDateTime
from core.ids import new_id
from core.timeutil import utcnow


class ModelStatus(enum.StrEnum):
    pending = "pending"
    ready = "ready"
    invalid = "invalid"


class RegisteredModel(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_models_tenant_name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    source_uri: Mapped[str] = mapped_column(String(1000))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    status: Mapped[ModelStatus] = mapped_column(
        Enum(ModelStatus, native_enum=False, length=16, create_constraint=True, name="model_status"),
        default=ModelStatus.pending,
    )
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    architecture: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # sha256 over the weight files, filled by the validation job; certificates quote it.
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    validated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The version new erasures run on (core.versions): 1 is the source as registered.
    head_version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    # Apply every succeeded erasure that ran on the head at once (unattended pipelines).
    auto_apply: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
