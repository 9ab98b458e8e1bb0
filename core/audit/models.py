"""The append-only, hash-chained audit log. A database trigger forbids UPDATE and DELETE."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JsonType, UtcDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"

    # Assigned by the single serialized writer (core.audit.service.append): gap-free, 1, 2, 3...
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Plain column, no foreign key: audit rows outlive anything they mention.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement "the chain's head was event `seq` with hash `hash`" (Ed25519, the certificate key).

    Verification starts from the newest checkpoint instead of the genesis, and a chain that no longer reaches a
    checkpoint's event (its newest events deleted) is reported as truncated."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(String(400))  # a detached JWS
