"""`running → verifying` as its own committed step: taken when the engine starts the full held-out
evaluation of the round it keeps (after it, no more training happens), so clients see `verifying` while
the judge labels images, the verdict is reached, artifacts are uploaded and the certificate is issued."""

from __future__ import annotations

from typing import Any

from core.db import unit_of_work
from core.erasure import repository
from core.erasure.states import RequestStatus, transition
from core.errors import StaleAttempt
from core.jobs.lifecycle import Lease, fenced
from core.jobs.retry import retry_db
from core.logging import get_logger
from core.spare.evaluator import Evaluator

log = get_logger(__name__)


def enter_verifying(held: Lease) -> bool:
    """Commit the request's move to `verifying`, fenced on the attempt. False when nothing moved."""
    if held.request_id is None:
        return False

    def step() -> bool:
        with unit_of_work() as session:
            fenced(session, held)  # lock order as everywhere: job, then request
            request = repository.lock_request(session, held.request_id)  # type: ignore[arg-type]
            return request is not None and transition(request, RequestStatus.verifying, if_open=True)

    try:
        return retry_db(step, what="verifying")
    except StaleAttempt:
        return False  # the keeper finds out too and stops the attempt


def verifying_from_here(held: Lease, evaluator: Evaluator) -> Evaluator:
    """The job's evaluator, moving the request to `verifying` the first time it is called."""
    entered: list[bool] = []

    def evaluate(erased: Any, base: Any, complete: bool = False,
                 judged: dict[str, Any] | None = None) -> dict[str, Any]:
        if not entered:
            entered.append(True)
            if enter_verifying(held):
                log.info("verifying", job_id=str(held.job_id))
        return evaluator(erased, base, complete=complete, judged=judged)

    return evaluate
