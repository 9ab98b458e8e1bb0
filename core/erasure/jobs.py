"""Job lifecycle: the job row is the contract between the API and the workers.

Created here (with its outbox doorbell, in the caller's transaction); leased, advanced and finished by
workers through the functions below. Never commits.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core.erasure.models import Job
from core.erasure.states import JobKind, JobState
from core.outbox.service import JOB_ENQUEUE, emit


def create_job(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    kind: JobKind,
    model_id: uuid.UUID,
    request_id: uuid.UUID | None = None,
    priority: int = 0,
    max_attempts: int = 3,
) -> Job:
    """Insert a queued job and the outbox row that will ring the worker's doorbell once committed."""
    job = Job(
        tenant_id=tenant_id,
        kind=kind,
        model_id=model_id,
        request_id=request_id,
        state=JobState.queued,
        priority=priority,
        max_attempts=max_attempts,
    )
    session.add(job)
    session.flush()
    emit(session, JOB_ENQUEUE, {"job_id": str(job.id), "kind": kind.value})
    return job


def request_cancel(session: Session, job: Job) -> None:
    """Ask a job to stop. A queued job is cancelled at once; a running one stops at its next step."""
    job.cancel_requested = True
    if job.state == JobState.queued:
        job.state = JobState.cancelled
