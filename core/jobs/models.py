"""The `jobs` and `artifacts` tables.

The `jobs` row is the contract between the API and the workers: its state, lease and attempt number are
the truth. A Celery message is only a doorbell; a worker leases the next row before it works, and the attempt
number is a fencing token — results written under a stale attempt are refused.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime
from core.ids import new_id
from core.jobs.states import JobKind, JobState
from core.timeutil import utcnow


def state_enum(cls: type, name: str) -> Enum:
    # Non-native enums (VARCHAR + CHECK): identical on SQLite and Postgres, nothing left behind on downgrade.
    return Enum(cls, native_enum=False, length=32, create_constraint=True, name=name)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_not_before", "state", "not_before"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[JobKind] = mapped_column(state_enum(JobKind, "job_kind"))
    request_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("erasure_requests.id", ondelete="CASCADE"), nullable=True, index=True
    )
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id"), index=True)
    state: Mapped[JobState] = mapped_column(state_enum(JobState, "job_state"), default=JobState.queued)
    # Incremented each time a worker leases the job: the fencing token for every write of that attempt.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Earliest time the job may be leased again (retry backoff).
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    stage: Mapped[str | None] = mapped_column(String(64), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Last time a doorbell message was published for this job (the sweeper republishes stale ones).
    enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "attempt", "name", name="uq_artifacts_job_attempt_name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    # Relative name inside the job output, e.g. "adapter/pytorch_lora_weights.safetensors".
    name: Mapped[str] = mapped_column(String(300))
    # Object-store key: tenants/{t}/requests/{r}/jobs/{j}/attempt-{n}/{name}
    key: Mapped[str] = mapped_column(String(1000))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
