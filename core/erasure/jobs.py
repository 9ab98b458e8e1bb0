"""Job lifecycle: the job row is the contract between the API and the workers.

Created here (with its outbox doorbell, in the caller's transaction); leased, advanced and finished by
workers through the functions below. Never commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit.service import append
from core.erasure import job_repository
from core.erasure.models import Artifact, ErasureRequest, Job
from core.erasure.states import TERMINAL, JobKind, JobState, RequestStatus, check_transition
from core.errors import StaleAttempt
from core.ids import new_id
from core.outbox.models import OutboxMessage
from core.outbox.service import JOB_ENQUEUE, WEBHOOK_EVENT, emit, outbox_values
from core.timeutil import utcnow


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
    values, doorbell = new_job_values(tenant_id=tenant_id, kind=kind, model_id=model_id, request_id=request_id,
                                      priority=priority, max_attempts=max_attempts)
    job = Job(**values)
    session.add(job)
    session.flush()
    session.add(OutboxMessage(**doorbell))
    return job


def new_job_values(
    *, tenant_id: uuid.UUID, kind: JobKind, model_id: uuid.UUID, request_id: uuid.UUID | None = None,
    priority: int = 0, max_attempts: int = 3, now: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Column values of a queued job and of its outbox doorbell, for callers that insert with Core
    (the submission hot path): the same rows `create_job` writes through the ORM (columns left out start
    at their defaults: attempt 0, no lease, no progress)."""
    now = now or utcnow()
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
        job.state = JobState.cancelled


# --- Worker side: lease, heartbeat, finish (the caller's boundary commits each step) -----------------

SYSTEM_SWEEPER = "system:sweeper"


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


def webhook_event(session: Session, event_type: str, tenant_id: uuid.UUID, data: dict[str, Any]) -> None:
    """Announce an event to the tenant's webhook endpoints (delivered by the outbox relay after commit)."""
    emit(
        session,
        WEBHOOK_EVENT,
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": event_type,
            "tenant_id": str(tenant_id),
            "created_at": utcnow().isoformat(),
            "data": data,
        },
    )


def move_request(session: Session, request: ErasureRequest, target: RequestStatus) -> bool:
    """Advance a request through the state machine. A request already decided (terminal) is left alone."""
    if request.status == target or request.status in TERMINAL:
        return False
    check_transition(request.status, target)
    request.status = target
    request.updated_at = utcnow()
    if target in TERMINAL:
        request.finished_at = utcnow()
    return True


def lease(session: Session, job_id: uuid.UUID, worker_id: str, lease_seconds: float,
          *, now: datetime | None = None) -> Lease | None:
    """Take the job for one attempt (attempt + 1) if it is queued, due and not cancelled; else None.

    Atomic: Postgres locks the row (FOR UPDATE; `lease_next` scans with SKIP LOCKED), and the claim itself is
    a conditional UPDATE on the attempt number it read, so two workers racing for one doorbell cannot both
    win (also on SQLite, which has no row locks).
    """
    now = now or utcnow()
    job = job_repository.lock_leasable(session, job_id, now)
    if job is None:
        return None
    request = job_repository.lock_request(session, job.request_id) if job.request_id else None
    if request is not None and request.status in TERMINAL:
        # Decided elsewhere (cancelled, rejected) while the job waited: it must not run.
        job.state = JobState.cancelled if request.status == RequestStatus.cancelled else JobState.failed
        job.finished_at = now
        return None
    if not job_repository.claim(
        session, job, worker_id=worker_id, lease_until=now + timedelta(seconds=lease_seconds), now=now
    ):
        return None
    if request is not None:
        move_request(session, request, RequestStatus.running)
    held = Lease(job.id, job.attempt, worker_id, job.kind, job.tenant_id, job.model_id, job.request_id)
    append(
        session, action="job.attempt_started", subject=f"job:{job.id}", actor=held.actor, tenant_id=job.tenant_id,
        payload={"attempt": job.attempt, "kind": job.kind.value, "request_id": _s(job.request_id)},
    )
    return held


def lease_next(session: Session, worker_id: str, lease_seconds: float, *, kinds: list[JobKind] | None = None,
               now: datetime | None = None) -> Lease | None:
    """Lease the next runnable job from the table (embedded runner: no broker, the table is the queue)."""
    now = now or utcnow()
    job_id = job_repository.next_leasable_id(session, now, kinds)
    return lease(session, job_id, worker_id, lease_seconds, now=now) if job_id else None


def heartbeat(session: Session, held: Lease, lease_seconds: float, *, stage: str | None = None,
              progress: float | None = None, now: datetime | None = None) -> Heartbeat:
    """Extend the lease and record progress; raises StaleAttempt if this attempt no longer owns the job."""
    now = now or utcnow()
    if progress is not None:
        progress = min(max(float(progress), 0.0), 1.0)
    ok = job_repository.fenced_heartbeat(
        session, held.job_id, held.attempt, lease_until=now + timedelta(seconds=lease_seconds), now=now,
        stage=stage[:64] if stage else None, progress=progress,
    )
    if not ok:
        raise StaleAttempt(f"job {held.job_id} attempt {held.attempt} lost its lease", job_id=str(held.job_id))
    flag = session.scalar(select(Job.cancel_requested).where(Job.id == held.job_id))
    return Heartbeat(cancel_requested=bool(flag))


def _fenced(session: Session, held: Lease) -> Job:
    job = job_repository.lock_job(session, held.job_id)
    if job is None or job.attempt != held.attempt or job.state != JobState.running:
        raise StaleAttempt(
            f"job {held.job_id} attempt {held.attempt} is stale "
            f"(now attempt {job.attempt if job else '?'}, {job.state.value if job else 'missing'})",
            job_id=str(held.job_id),
        )
    return job


def _close(job: Job, state: JobState, now: datetime) -> None:
    job.state = state
    job.finished_at = now
    job.lease_owner = None
    job.lease_expires_at = None
    job.updated_at = now


@dataclass(frozen=True)
class StoredArtifact:
    name: str
    key: str
    size: int
    sha256: str


def complete(session: Session, held: Lease, *, artifacts: list[StoredArtifact], metrics: dict[str, Any] | None,
             now: datetime | None = None) -> JobState:
    """ONE transaction: fenced on the attempt — job and request succeed, artifacts recorded, audit appended.

    Returns `cancelled` instead when a cancel arrived meanwhile (the caller then removes the uploads).
    """
    now = now or utcnow()
    job = _fenced(session, held)
    if job.cancel_requested:
        cancel(session, held, now=now)
        return JobState.cancelled
    _close(job, JobState.succeeded, now)
    job.progress = 1.0
    job.stage = "done"
    job.error = None
    rows = []
    for art in artifacts:
        row = Artifact(job_id=job.id, attempt=held.attempt, name=art.name, key=art.key, size=art.size,
                       sha256=art.sha256)
        session.add(row)
        rows.append(row)
        append(session, action="artifact.stored", subject=f"job:{job.id}", actor=held.actor,
               tenant_id=job.tenant_id,
               payload={"attempt": held.attempt, "name": art.name, "key": art.key, "sha256": art.sha256,
                        "size": art.size})
    session.flush()
    append(session, action="job.attempt_finished", subject=f"job:{job.id}", actor=held.actor,
           tenant_id=job.tenant_id, payload={"attempt": held.attempt, "outcome": "succeeded"})
    if job.request_id is not None:
        request = job_repository.lock_request(session, job.request_id)
        assert request is not None
        request.metrics = metrics
        request.error = None
        move_request(session, request, RequestStatus.verifying)
        move_request(session, request, RequestStatus.succeeded)
        _issue_certificate(session, request, job, rows)
        append(session, action="erasure.succeeded", subject=f"erasure:{request.id}", actor=held.actor,
               tenant_id=job.tenant_id, payload={"job_id": str(job.id), "attempt": held.attempt})
        webhook_event(session, "erasure.succeeded", job.tenant_id,
                      {"request_id": str(request.id), "job_id": str(job.id), "status": "succeeded"})
    return JobState.succeeded


def _issue_certificate(session: Session, request: ErasureRequest, job: Job, artifacts: list[Artifact]) -> None:
    try:
        from core.certificates import issue  # the API side's signer; absent in a partial install
    except ImportError:
        return
    issue(session, request, job, artifacts)


def backoff_seconds(attempt: int, base: float) -> float:
    """Exponential backoff after attempt n (1-based): base, 2·base, 4·base, ... capped at an hour."""
    return min(base * (2 ** max(attempt - 1, 0)), 3600.0)


def fail(session: Session, held: Lease, reason: str, *, retryable: bool, backoff_base: float = 10.0,
         now: datetime | None = None, metrics: dict[str, Any] | None = None) -> JobState:
    """Record a failed attempt: back to `queued` after a backoff while attempts remain, else `failed`.
    `metrics`: what the attempt measured (a failed verification keeps its evidence on the request)."""
    now = now or utcnow()
    job = _fenced(session, held)
    if job.cancel_requested:
        cancel(session, held, now=now)
        return JobState.cancelled
    return _retry_or_fail(session, job, reason, retryable=retryable, actor=held.actor,
                          delay=backoff_seconds(held.attempt, backoff_base), now=now, metrics=metrics)


def _retry_or_fail(session: Session, job: Job, reason: str, *, retryable: bool, actor: str, delay: float,
                   now: datetime, metrics: dict[str, Any] | None = None) -> JobState:
    reason = reason[:4000]
    job.error = reason
    request = job_repository.lock_request(session, job.request_id) if job.request_id else None
    if retryable and job.attempt < job.max_attempts:
        job.state = JobState.queued
        job.lease_owner = None
        job.lease_expires_at = None
        job.not_before = now + timedelta(seconds=delay) if delay > 0 else None
        job.enqueued_at = None  # no live doorbell: the sweeper rings again once not_before has passed
        job.stage = "retrying"
        job.updated_at = now
        if request is not None:
            move_request(session, request, RequestStatus.queued)
        append(session, action="job.attempt_finished", subject=f"job:{job.id}", actor=actor,
               tenant_id=job.tenant_id,
               payload={"attempt": job.attempt, "outcome": "retry", "reason": reason,
                        "not_before": job.not_before.isoformat() if job.not_before else None})
        return JobState.queued
    _close(job, JobState.failed, now)
    if retryable:
        reason = f"{reason} (gave up after {job.attempt} of {job.max_attempts} attempts)"
        job.error = reason
    append(session, action="job.attempt_finished", subject=f"job:{job.id}", actor=actor, tenant_id=job.tenant_id,
           payload={"attempt": job.attempt, "outcome": "failed", "reason": reason})
    if request is not None:
        request.error = reason
        if metrics is not None:
            request.metrics = metrics
        move_request(session, request, RequestStatus.failed)
        append(session, action="erasure.failed", subject=f"erasure:{request.id}", actor=actor,
               tenant_id=job.tenant_id, payload={"job_id": str(job.id), "reason": reason})
        webhook_event(session, "erasure.failed", job.tenant_id,
                      {"request_id": str(request.id), "job_id": str(job.id), "status": "failed", "error": reason})
    return JobState.failed


def cancel(session: Session, held: Lease, *, now: datetime | None = None) -> None:
    """The running attempt stopped on request: job and request `cancelled` (fenced)."""
    now = now or utcnow()
    job = job_repository.lock_job(session, held.job_id)
    if job is None or job.attempt != held.attempt or job.state != JobState.running:
        raise StaleAttempt(f"job {held.job_id} attempt {held.attempt} is stale", job_id=str(held.job_id))
    _close(job, JobState.cancelled, now)
    job.stage = "cancelled"
    append(session, action="job.attempt_finished", subject=f"job:{job.id}", actor=held.actor,
           tenant_id=job.tenant_id, payload={"attempt": held.attempt, "outcome": "cancelled"})
    if job.request_id is not None:
        request = job_repository.lock_request(session, job.request_id)
        assert request is not None
        if move_request(session, request, RequestStatus.cancelled):
            append(session, action="erasure.cancelled", subject=f"erasure:{request.id}", actor=held.actor,
                   tenant_id=job.tenant_id, payload={"job_id": str(job.id)})
            webhook_event(session, "erasure.cancelled", job.tenant_id,
                          {"request_id": str(request.id), "job_id": str(job.id), "status": "cancelled"})


def release(session: Session, held: Lease, reason: str, *, now: datetime | None = None) -> JobState:
    """Graceful shutdown: hand the running attempt back to the queue at once (no backoff). The attempt
    number still advances (it is a fencing token), so the job gets one extra attempt in exchange."""
    now = now or utcnow()
    job = _fenced(session, held)
    job.state = JobState.queued
    job.lease_owner = None
    job.lease_expires_at = None
    job.not_before = None
    job.enqueued_at = None
    job.stage = "released"
    job.max_attempts += 1
    job.updated_at = now
    if job.request_id is not None:
        request = job_repository.lock_request(session, job.request_id)
        assert request is not None
        move_request(session, request, RequestStatus.queued)
    append(session, action="job.attempt_finished", subject=f"job:{job.id}", actor=held.actor,
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
    expired = job_repository.expired_leases(session, now)
    if orphans_of is not None:
        seen = {j.id for j in expired}
        expired += [j for j in job_repository.running_owned_by(session, orphans_of)
                    if j.id not in seen and j.lease_owner != keep_owner]
    for job in expired:
        lost = job.lease_owner
        append(session, action="job.lease_expired", subject=f"job:{job.id}", actor=SYSTEM_SWEEPER,
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
