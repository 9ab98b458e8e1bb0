"""Versions of a registered model: v1 is the source as registered; an applied erasure makes the next one.

A version's files live under `tenants/{t}/models/{m}/versions/{n}/` in the object store (`fused/...` — the
whole pipeline as a diffusers folder — and `adapter/...` — one LoRA relative to v1 that reproduces it, when
the lineage is exact). `artifacts` lists them with their sha256; `erased_concepts` is cumulative.

A version a certificate names — made by a certified erasure (`certificate_sha256`), or the parent of another
version — cannot be deleted: a database trigger refuses (migration 0011), also in the cascade from its
model or tenant.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JsonType, UtcDateTime
from core.ids import new_id
from core.timeutil import utcnow


class VersionStatus(enum.StrEnum):
    # pending: applied (the head may already name it), files still being stored by the apply_version job.
    pending = "pending"
    ready = "ready"
    failed = "failed"


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number", name="uq_model_versions_model_number"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    parent_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The erasure that made this version (None for v1). No cascade: a version outlives nothing it names.
    erasure_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("erasure_requests.id"), nullable=True, unique=True
    )
    status: Mapped[VersionStatus] = mapped_column(
        Enum(VersionStatus, native_enum=False, length=16, create_constraint=True, name="version_status"),
        default=VersionStatus.pending,
    )
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Every concept erased in v2..this version: [{"target", "kind", "surrogate", "version", "erasure_id"}].
    erased_concepts: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    # [{"name", "key", "size", "sha256"}]; names as in an erasure's artifact set (fused/..., adapter/...).
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    # sha256 over the weight files (core.spare.loading.fingerprint's definition); v1: the model's.
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The cumulative adapter: {"exact": bool, "rank": int | None, "reason": str | None}.
    adapter: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    # sha256 of the JCS bytes of the certificate document of `erasure_id` (what the next one links to).
    certificate_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
