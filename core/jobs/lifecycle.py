"""Job lifecycle: the job row is the contract between the API and the workers.

Created here (with its outbox doorbell, in the caller's transaction); leased, advanced and finished by
workers through the functions below — every state change through `states.transition`, every write of an
attempt fenced on its attempt number. What an outcome means to the job's subject (an erasure request, a
model) is its kind's handler's business (`core.jobs.handlers`). Never commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import get_settings
from core.errors import StaleAttempt
from core.ids import new_id
from core.jobs import handlers, repository
from core.jobs.journal import record
from core.jobs.models import Artifact, Job
from core.jobs.retry import backoff_seconds
from core.jobs.states import JobKind, JobState, transition
from core.outbox.models import OutboxMessage
from core.outbox.service import JOB_ENQUEUE, outbox_values
from core.timeutil import utcnow

SYSTEM_SWEEPER = "system:sweeper"


def create_job(
    session: Session, *, tenant_id: uuid.UUID, kind: JobKind, model_id: uuid.UUID,
    request_id: uuid.UUID | None = None, priority: int = 0, max_attempts: int | None = None,
) -> Job:
    """Insert a queued job and the outbox row that will ring a worker's doorbell once committed."""
    values, doorbell = new_job_values(tenant_id=tenant_id, kind=kind, model_id=model_id, request_id=request_id,
                                      priority=priority, max_attempts=max_attempts)
    job = Job(**values)
    session.add(job)
    session.flush()
    session.add(OutboxMessage(**doorbell))
    return job


def new_job_values(
    *, tenant_id: uuid.UUID, kind: JobKind, model_id: uuid.UUID, request_id: uuid.UUID | None = None,
    priority: int = 0, max_attempts: int | None = None, now: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Column values of a queued job and of its outbox doorbell, for callers that insert with Core
    (the submission hot path): the same rows `create_job` writes through the ORM (columns left out start
    at their defaults: attempt 0, no lease, no progress). `max_attempts` defaults to LETHE_JOB_MAX_ATTEMPTS."""
    now = now or utcnow()
    if max_attempts is None:
        max_attempts = get_settings().job_max_attempts
    job = {
        "id": new_id(), "tenant_id": tenant_id, "kind": kind, "request_id": request_id, "model_id": model_id,
        "state": JobState.queued, "max_attempts": max_attempts, "priority": priority,
        "created_at": now, "updated_at": now,
    }
    return job, outbox_values(JOB_ENQUEUE, {"job_id": str(job["id"]), "kind": kind.value}, now=now)


def request_cancel(session: Session, job: Job) -> None:
    """Ask a job to stop. A queued job is cancelled at once; a running one stops at its next step."""
    job.cancel_requested = True
    if job.state == JobState.queued:
        transition(job, JobState.cancelled)


# --- Worker side: lease, heartbeat, finish (the caller's boundary commits each step) -----------------


@dataclass(frozen=True)
class Lease:
    """What a worker holds while it runs one attempt. `attempt` is the fencing token for every write."""

    job_id: uuid.UUID
    attempt: int
    worker_id: str
    kind: JobKind
    tenant_id: uuid.UUID
    model_id: uuid.UUID
    request_id: uuid.UUID | None

    @property
    def actor(self) -> str:
        return f"worker:{self.worker_id}"


@dataclass(frozen=True)
class Heartbeat:
    cancel_requested: bool


def lease(session: Session, job_id: uuid.UUID, worker_id: str, lease_seconds: float,
          *, now: datetime | None = None) -> Lease | None:
    """Take this job for one attempt (attempt + 1) if it is queued, due and not cancelled; else None.

    Atomic: Postgres locks the row (FOR UPDATE; `lease_next` scans with SKIP LOCKED), and the claim itself is
    a conditional UPDATE on the attempt number it read, so two workers racing for one job cannot both win
    (also on SQLite, which has no row locks).
    """
    now = now or utcnow()
    job = repository.lock_leasable(session, job_id, now)
    if job is None:
        return None
    handler = handlers.get(job.kind)
    refused = handler.admit(session, job)
    if refused is not None:
        transition(job, refused, now=now)
        return None
    if not repository.claim(
        session, job, worker_id=worker_id, lease_until=now + timedelta(seconds=lease_seconds), now=now
    ):
        return None
    held = Lease(job.id, job.attempt, worker_id, job.kind, job.tenant_id, job.model_id, job.request_id)
    handler.started(session, job, held)
    record(session, action="job.attempt_started", job_id=job.id, actor=held.actor, tenant_id=job.tenant_id,
           payload={"attempt": job.attempt, "kind": job.kind.value, "request_id": _s(job.request_id)})
    return held


def lease_next(session: Session, worker_id: str, lease_seconds: float, *, kinds: list[JobKind] | None = None,
               now: datetime | None = None) -> Lease | None:
    """Lease the next runnable job by the one scheduling rule (`repository.next_leasable_id`): what a
    Celery doorbell and the embedded runner's loop both do."""
    now = now or utcnow()
    job_id = repository.next_leasable_id(session, now, kinds)
    return lease(session, job_id, worker_id, lease_seconds, now=now) if job_id else None


def heartbeat(session: Session, held: Lease, lease_seconds: float, *, stage: str | None = None,
              progress: float | None = None, now: datetime | None = None) -> Heartbeat:
    """Extend the lease and record progress; raises StaleAttempt if this attempt no longer owns the job."""
    now = now or utcnow()
    if progress is not None:
        progress = min(max(float(progress), 0.0), 1.0)
    ok = repository.fenced_heartbeat(
        session, held.job_id, held.attempt, lease_until=now + timedelta(seconds=lease_seconds), now=now,
        stage=stage[:64] if stage else None, progress=progress,
    )
    if not ok:
        raise StaleAttempt(f"job {held.job_id} attempt {held.attempt} lost its lease", job_id=str(held.job_id))
    flag = session.scalar(select(Job.cancel_requested).where(Job.id == held.job_id))
    return Heartbeat(cancel_requested=bool(flag))


def fenced(session: Session, held: Lease) -> Job:
    """The job row, locked, if this attempt still owns it (running, same attempt); else StaleAttempt."""
    job = repository.lock_job(session, held.job_id)
    if job is None or job.attempt != held.attempt or job.state != JobState.running:
        raise StaleAttempt(
            f"job {held.job_id} attempt {held.attempt} is stale "
            f"(now attempt {job.attempt if job else '?'}, {job.state.value if job else 'missing'})",
            job_id=str(held.job_id),
        )
    return job


@dataclass(frozen=True)
class StoredArtifact:
    name: str
    key: str
    size: int
    sha256: str


def complete(session: Session, held: Lease, *, artifacts: list[StoredArtifact], result: Any = None,
             now: datetime | None = None) -> JobState:
    """ONE transaction, fenced on the attempt: the job succeeds, its artifacts are recorded, the audit
    appended, and the kind's handler records what the success means (`result` is passed to it).

    Returns `cancelled` instead when a cancel arrived meanwhile (the caller then removes the uploads).
    """
    now = now or utcnow()
    job = fenced(session, held)
    if job.cancel_requested:
        cancel(session, held, now=now)
        return JobState.cancelled
    transition(job, JobState.succeeded, now=now)
    job.progress = 1.0
    job.stage = "done"
    job.error = None
    for art in artifacts:
        session.add(Artifact(job_id=job.id, attempt=held.attempt, name=art.name, key=art.key, size=art.size,
                             sha256=art.sha256))
        record(session, action="artifact.stored", job_id=job.id, actor=held.actor,
               tenant_id=job.tenant_id,
               payload={"attempt": held.attempt, "name": art.name, "key": art.key, "sha256": art.sha256,
                        "size": art.size})
    session.flush()
    record(session, action="job.attempt_finished", job_id=job.id, actor=held.actor,
           tenant_id=job.tenant_id, payload={"attempt": held.attempt, "outcome": "succeeded"})
    handlers.get(job.kind).succeeded(session, job, held, result)
    return JobState.succeeded


def fail(session: Session, held: Lease, reason: str, *, retryable: bool, backoff_base: float = 10.0,
         now: datetime | None = None, evidence: Any = None) -> JobState:
    """Record a failed attempt: back to `queued` after a backoff while attempts remain, else `failed`.
    `evidence`: what the attempt measured (a failed verification keeps it on the request)."""
    now = now or utcnow()
    job = fenced(session, held)
    if job.cancel_requested:
        cancel(session, held, now=now)
        return JobState.cancelled
    return _retry_or_fail(session, job, reason, retryable=retryable, actor=held.actor,
                          delay=backoff_seconds(held.attempt, backoff_base), now=now, evidence=evidence)


def _retry_or_fail(session: Session, job: Job, reason: str, *, retryable: bool, actor: str, delay: float,
                   now: datetime, evidence: Any = None) -> JobState:
    reason = reason[:4000]
    job.error = reason
    handler = handlers.get(job.kind)
    if retryable and job.attempt < job.max_attempts:
        transition(job, JobState.queued, now=now)
        job.not_before = now + timedelta(seconds=delay) if delay > 0 else None
        job.enqueued_at = None  # no live doorbell: the sweeper rings again once not_before has passed
        job.stage = "retrying"
        handler.requeued(session, job)
        record(session, action="job.attempt_finished", job_id=job.id, actor=actor,
               tenant_id=job.tenant_id,
               payload={"attempt": job.attempt, "outcome": "retry", "reason": reason,
                        "not_before": job.not_before.isoformat() if job.not_before else None})
        return JobState.queued
    transition(job, JobState.failed, now=now)
    if retryable:
        reason = f"{reason} (gave up after {job.attempt} of {job.max_attempts} attempts)"
        job.error = reason
    record(session, action="job.attempt_finished", job_id=job.id, actor=actor, tenant_id=job.tenant_id,
           payload={"attempt": job.attempt, "outcome": "failed", "reason": reason})
    handler.failed(session, job, actor, reason, evidence)
    return JobState.failed


def cancel(session: Session, held: Lease, *, now: datetime | None = None) -> None:
    """The running attempt stopped on request: the job is `cancelled` (fenced)."""
    now = now or utcnow()
    job = fenced(session, held)
    transition(job, JobState.cancelled, now=now)
    job.stage = "cancelled"
    record(session, action="job.attempt_finished", job_id=job.id, actor=held.actor,
           tenant_id=job.tenant_id, payload={"attempt": held.attempt, "outcome": "cancelled"})
    handlers.get(job.kind).cancelled(session, job, held.actor)


def release(session: Session, held: Lease, reason: str, *, now: datetime | None = None) -> JobState:
    """Hand the running attempt back to the queue at once (no backoff): a graceful shutdown. The attempt
    number still advances (it is a fencing token), so the job gets one extra attempt in exchange."""
    now = now or utcnow()
    job = fenced(session, held)
    transition(job, JobState.queued, now=now)
    job.not_before = None
    job.enqueued_at = None
    job.stage = "released"
    job.max_attempts += 1
    handlers.get(job.kind).requeued(session, job)
    record(session, action="job.attempt_finished", job_id=job.id, actor=held.actor,
           tenant_id=job.tenant_id, payload={"attempt": held.attempt, "outcome": "released", "reason": reason})
    return JobState.queued


def requeue_expired(session: Session, *, now: datetime | None = None,
                    orphans_of: str | None = None, keep_owner: str | None = None) -> list[tuple[uuid.UUID, JobState]]:
    """Running jobs whose lease expired (their worker died): back to `queued` (the next lease is attempt+1),
    or `failed` once attempts are used up, or `cancelled` if a cancel was pending.

    `orphans_of="embedded:"` also takes back every running job leased by an earlier embedded process
    (lease not yet expired): in embedded mode this process is the only worker, so they are certainly dead.
    """
    now = now or utcnow()
    out: list[tuple[uuid.UUID, JobState]] = []
    expired = repository.expired_leases(session, now)
    if orphans_of is not None:
        seen = {j.id for j in expired}
        expired += [j for j in repository.running_owned_by(session, orphans_of)
                    if j.id not in seen and j.lease_owner != keep_owner]
    for job in expired:
        lost = job.lease_owner
        record(session, action="job.lease_expired", job_id=job.id, actor=SYSTEM_SWEEPER,
               tenant_id=job.tenant_id, payload={"attempt": job.attempt, "lease_owner": lost})
        if job.cancel_requested:
            held = Lease(job.id, job.attempt, SYSTEM_SWEEPER.split(":", 1)[1], job.kind, job.tenant_id,
                         job.model_id, job.request_id)
            cancel(session, held, now=now)
            out.append((job.id, JobState.cancelled))
            continue
        state = _retry_or_fail(
            session, job, f"worker {lost} stopped responding during attempt {job.attempt} (lease expired)",
            retryable=True, actor=SYSTEM_SWEEPER, delay=0.0, now=now,
        )
        out.append((job.id, state))
    return out


def _s(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None
