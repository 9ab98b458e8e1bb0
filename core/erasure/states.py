"""The erasure request state machine and job states — the one place transitions are defined.

    submitted → awaiting_approval → queued → running → verifying → succeeded
                         ↘ rejected      ↘ (retry) queued        ↘ failed
    any non-terminal state → cancelled
"""

from __future__ import annotations

import enum

from core.errors import InvalidTransition


class RequestStatus(enum.StrEnum):
    submitted = "submitted"
    awaiting_approval = "awaiting_approval"
    queued = "queued"
    running = "running"
    verifying = "verifying"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    rejected = "rejected"


TERMINAL: frozenset[RequestStatus] = frozenset(
    {RequestStatus.succeeded, RequestStatus.failed, RequestStatus.cancelled, RequestStatus.rejected}
)

S = RequestStatus
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.submitted: frozenset({S.awaiting_approval, S.queued, S.cancelled, S.rejected}),
    S.awaiting_approval: frozenset({S.queued, S.rejected, S.cancelled}),
    # queued → failed: validation of inputs at lease time can fail a job before it runs.
    S.queued: frozenset({S.running, S.cancelled, S.failed}),
    # running → queued: a retryable attempt failure or an expired lease returns the job to the queue.
    S.running: frozenset({S.verifying, S.queued, S.failed, S.cancelled}),
    S.verifying: frozenset({S.succeeded, S.failed, S.queued, S.cancelled}),
    S.succeeded: frozenset(),
    S.failed: frozenset(),
    S.cancelled: frozenset(),
    S.rejected: frozenset(),
}


def can_transition(current: RequestStatus, target: RequestStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: RequestStatus, target: RequestStatus) -> None:
    """Raise InvalidTransition (rendered as a 409 problem) for a move the table does not allow."""
    if not can_transition(current, target):
        raise InvalidTransition(
            f"cannot move an erasure request from '{current.value}' to '{target.value}'",
            current=current.value,
            target=target.value,
        )


class JobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class JobKind(enum.StrEnum):
    erase = "erase"
    validate_model = "validate_model"
