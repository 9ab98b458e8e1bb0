"""A batch groups the requests one submission (or one schedule slot) created."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Uuid, true
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime
from core.ids import new_id
from core.timeutil import utcnow


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    # Requests created: one per model (`combined`), or one per model and concept.
    size: Mapped[int] = mapped_column(Integer, default=0)
    # One request per model with every concept (one version each), or a chain per model with one request
    # per concept, applied in order (one version per concept: core.erasure.chain).
    combined: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
