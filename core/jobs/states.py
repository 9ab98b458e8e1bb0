"""Job states, job kinds and their lanes — and the one table of legal job state moves.

    queued ──▶ running ──▶ succeeded
      │  ▲        │  │
      │  └────────┘  └──▶ failed / cancelled      (running → queued: retry, release, expired lease)
      └──▶ cancelled / failed                     (decided before it ran)

Every write of `Job.state` goes through `transition()` (the lease's conditional UPDATE checks the same
table first), so a move the table does not list raises instead of happening.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from core.errors import InvalidTransition
from core.timeutil import utcnow

if TYPE_CHECKING:
    from core.jobs.models import Job


class JobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class JobKind(enum.StrEnum):
    """What a job does. A new kind: add it here (and to LANES), register its handler (`core.jobs.handlers`),
    and add a migration that widens the `job_kind` CHECK constraint."""

    erase = "erase"
    validate_model = "validate_model"
    # Store an applied erasure's files as a model version (core.versions.storing): no torch.
    apply_version = "apply_version"


class Lane(enum.StrEnum):
    """The broker queue a kind's doorbells go to, and the workers that lease it."""

    gpu = "gpu"  # model-heavy work: solo workers, one per GPU
    default = "default"  # light work: prefork workers without the torch stack (the API image)


LANES: dict[JobKind, Lane] = {
    JobKind.erase: Lane.gpu,
    JobKind.validate_model: Lane.default,
    JobKind.apply_version: Lane.default,
}


def kinds_of(lanes: list[Lane] | list[str]) -> list[JobKind]:
    """The job kinds a worker consuming `lanes` leases."""
    wanted = {Lane(lane) for lane in lanes}
    return [kind for kind, lane in LANES.items() if lane in wanted]


TERMINAL: frozenset[JobState] = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})

J = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # queued → cancelled/failed: cancelled before it ran, or its request was decided elsewhere meanwhile.
    J.queued: frozenset({J.running, J.cancelled, J.failed}),
    # running → queued: a retryable failure, a graceful release or an expired lease (attempt + 1 next time).
    J.running: frozenset({J.succeeded, J.failed, J.cancelled, J.queued}),
    J.succeeded: frozenset(),
    J.failed: frozenset(),
    J.cancelled: frozenset(),
}


def check(current: JobState, target: JobState) -> None:
    """Raise InvalidTransition (a 409 problem) for a move the table does not list."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"cannot move a job from '{current.value}' to '{target.value}'",
                                current=current.value, target=target.value)


def transition(job: Job, target: JobState, *, now: datetime | None = None) -> None:
    """Move `job` to `target` (checked against the table); a terminal state stamps `finished_at` and drops
    the lease."""
    check(JobState(job.state), target)
    now = now or utcnow()
    job.state = target
    job.updated_at = now
    if target in TERMINAL:
        job.finished_at = now
    if target != JobState.running:
        job.lease_owner = None
        job.lease_expires_at = None
