"""The erasure request state machine — the one table of legal moves and the one function that makes them.

    submitted → awaiting_approval → queued → running → verifying → succeeded
                         ↘ rejected      ↘ (retry) queued        ↘ failed
    submitted / awaiting_approval → waiting → queued        (a chained request, below)
    any non-terminal state → cancelled

`waiting`: a chained request (one of a batch's erasures applied in order, core.erasure.chain) waits, without a
job, until the version its predecessor made is stored; then it is queued on that version.

`running → verifying` is its own committed step: the worker moves the request when the engine starts the
held-out evaluation of the round it keeps (core.erasure.handlers); the verdict, upload and certificate follow.
Job states have their own table in core.jobs.states.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from core.errors import InvalidTransition
from core.timeutil import utcnow

if TYPE_CHECKING:
    from core.erasure.models import ErasureRequest


class RequestStatus(enum.StrEnum):
    submitted = "submitted"
    awaiting_approval = "awaiting_approval"
    waiting = "waiting"
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
    S.submitted: frozenset({S.awaiting_approval, S.waiting, S.queued, S.cancelled, S.rejected}),
    # awaiting_approval → waiting: approved before the predecessor of a chained request was applied.
    S.awaiting_approval: frozenset({S.queued, S.waiting, S.rejected, S.cancelled}),
    S.waiting: frozenset({S.queued, S.cancelled}),
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


def transition(request: ErasureRequest, target: RequestStatus, *, if_open: bool = False,
               now: datetime | None = None) -> bool:
    """Move `request` to `target`, checked against the table (InvalidTransition, a 409, otherwise).

    `if_open`: the worker side's form — a request already at `target` or already decided (terminal) is left
    alone and False returned (a cancel or a rejection won the race)."""
    if if_open and (request.status == target or request.status in TERMINAL):
        return False
    check_transition(request.status, target)
    now = now or utcnow()
    request.status = target
    request.updated_at = now
    if target in TERMINAL:
        request.finished_at = now
    return True
