"""Lease a job and run one attempt through its kind's handler: what a Celery doorbell and the embedded runner
both do.

`wake(lanes)` is a doorbell: it leases the NEXT job of those lanes by the one scheduling rule
(`repository.next_leasable_id`: priority, due, age), not necessarily the job that rang. Outcomes are sorted
here, the same for every kind: stopped (cancel → `cancelled`, shutdown → released to the queue, time limit
→ a retryable failure), stale (another attempt owns the job: write nothing), a permanent error (fail at once
with the reason) and everything else (retry with backoff until max attempts; then fail with the reason).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from core.config import Settings, get_settings
from core.db import unit_of_work
from core.errors import StaleAttempt
from core.jobs import handlers, lifecycle
from core.jobs.handlers import Attempt
from core.jobs.keeper import AttemptStopped, LeaseKeeper
from core.jobs.metrics import record_attempt
from core.jobs.retry import retry_db
from core.jobs.states import JobState, Lane, kinds_of
from core.logging import bind_context, get_logger

log = get_logger(__name__)


def wake(lanes: list[Lane] | list[str], *, worker_id: str, settings: Settings | None = None,
         shutdown: threading.Event | None = None, rung_for: uuid.UUID | str | None = None,
         **options: Any) -> str:
    """A doorbell: lease the next job of `lanes` and run it. Returns its outcome, or "skipped" when there is
    nothing to run.

    `rung_for` (the job whose doorbell this is): when the scan finds nothing — every leasable row is locked
    by someone else — lease that job, waiting for its row lock. The writer holding it is usually the relay
    that just rang this very doorbell (it stamps `enqueued_at` before it commits); without the wait, such
    doorbells were lost and their jobs waited for the doorbells service.
    """
    settings = settings or get_settings()
    kinds = kinds_of(lanes)

    def take() -> lifecycle.Lease | None:
        with unit_of_work() as session:
            held = lifecycle.lease_next(session, worker_id, settings.job_lease_seconds, kinds=kinds)
            if held is None and rung_for is not None:
                held = lifecycle.lease(session, uuid.UUID(str(rung_for)), worker_id, settings.job_lease_seconds)
            return held

    held = retry_db(take, what="lease")
    if held is None:
        return "skipped"
    return run_leased(held, settings, shutdown=shutdown, **options)


def execute(job_id: uuid.UUID | str, *, worker_id: str, settings: Settings | None = None,
            shutdown: threading.Event | None = None, **options: Any) -> str:
    """Lease and run one attempt of this very job (tests, tools). Returns the outcome: succeeded, failed,
    queued (retry later), cancelled, stale or skipped (not queued, not due, or another worker has it)."""
    settings = settings or get_settings()

    def take() -> lifecycle.Lease | None:
        with unit_of_work() as session:
            return lifecycle.lease(session, uuid.UUID(str(job_id)), worker_id, settings.job_lease_seconds)

    held = retry_db(take, what="lease")
    if held is None:
        return "skipped"
    return run_leased(held, settings, shutdown=shutdown, **options)


def run_leased(held: lifecycle.Lease, settings: Settings, *, shutdown: threading.Event | None = None,
               **options: Any) -> str:
    """Run a leased attempt; its outcome and duration go to the job metrics."""
    started = time.monotonic()
    outcome = _run(held, settings, shutdown, options)
    record_attempt(held.kind.value, outcome, time.monotonic() - started)
    return outcome


def _run(held: lifecycle.Lease, settings: Settings, shutdown: threading.Event | None,
         options: dict[str, Any]) -> str:
    handler = handlers.get(held.kind)
    keeper = LeaseKeeper(held, settings, shutdown).start()
    attempt = Attempt(held, settings, keeper, options)
    with bind_context(job_id=str(held.job_id), attempt=held.attempt, worker=held.worker_id):
        log.info("attempt started", kind=held.kind.value)
        try:
            outcome = handler.run(attempt)
        except (AttemptStopped, *handler.stopped):
            attempt.clean_up()  # while the keeper still holds the lease
            keeper.stop()
            if keeper.lost:
                return "stale"
            outcome = _stopped(held, keeper, settings)
        except StaleAttempt:
            keeper.stop()
            attempt.clean_up()
            log.warning("attempt is stale; its results were discarded")
            return "stale"
        except Exception as exc:
            keeper.stop()
            permanent = isinstance(exc, handler.permanent)
            reason = handler.reason(exc)
            log.warning("attempt failed", reason=reason, retryable=not permanent)
            if not permanent:
                log.debug("traceback", exc_info=True)
            evidence = getattr(exc, "metrics", None)
            outcome = finish_attempt(lambda s: lifecycle.fail(s, held, reason, retryable=not permanent,
                                                               backoff_base=settings.job_retry_backoff_seconds,
                                                               evidence=evidence))
            # Only after the failure is recorded: when the store is what failed, cleaning up can take long.
            attempt.clean_up()
        finally:
            keeper.stop()
            attempt.remove_work()
        log.info("attempt finished", outcome=outcome)
        return outcome


def _stopped(held: lifecycle.Lease, keeper: LeaseKeeper, settings: Settings) -> str:
    if keeper.cancel_requested:
        log.info("attempt cancelled; partial results removed")
        return finish_attempt(lambda s: (lifecycle.cancel(s, held), JobState.cancelled)[1])
    if keeper.timed_out:
        reason = f"the attempt ran past the time limit of {settings.job_time_limit_seconds:g} s and was stopped"
        return finish_attempt(lambda s: lifecycle.fail(s, held, reason, retryable=True,
                                                        backoff_base=settings.job_retry_backoff_seconds))
    log.info("worker shutting down; job returned to the queue")
    return finish_attempt(lambda s: lifecycle.release(s, held, "worker shut down"))


def finish_attempt(write: Callable[[Any], JobState | str]) -> str:
    """Run the attempt's final write in its own transaction (retried while the database is away)."""
    def step() -> str:
        with unit_of_work() as session:
            result = write(session)
        return result.value if isinstance(result, JobState) else str(result)

    try:
        return retry_db(step, what="finish")
    except StaleAttempt:
        return "stale"
