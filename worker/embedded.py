"""The embedded runner (LETHE_BROKER_URL empty): `lethe serve` runs jobs on in-process threads, fed from
the job table — the same `execute` path a Celery worker runs, not eager execution inside the request.

- job thread: leases the next runnable job by the same rule as Celery workers (core.jobs.runner: priority,
  due, age; every lane) and runs it; sleeps until woken or 1 s.
- housekeeping thread: the background services (core.jobs.services: expired leases, outbox, overdue flags,
  schedules, webhook retries, each switchable);
  webhook deliveries go to a bounded pool (`core.webhooks.dispatch`, one lane per endpoint), so a slow
  receiver neither stalls the sweeper nor other endpoints' deliveries.
On start it takes back jobs an earlier embedded process was running when it died (the restart case);
on stop it asks the running job to stop and hands it back to the queue, and waits at most one webhook
deadline for deliveries in flight.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

from core import wiring
from core.config import Settings, get_settings
from core.db import unit_of_work
from core.jobs import lifecycle
from core.jobs.retry import is_db_outage
from core.jobs.runner import run_leased
from core.jobs.services import sweep
from core.jobs.states import JobState
from core.logging import get_logger
from core.webhooks.dispatch import DeliveryPool

log = get_logger(__name__)
OWNER_PREFIX = "embedded:"


class EmbeddedPublisher:
    """Doorbells wake the job thread; webhook deliveries go to the delivery pool."""

    def __init__(self, wake: threading.Event, settings: Settings | None = None) -> None:
        self.wake = wake
        self.settings = settings or get_settings()
        self.webhooks = DeliveryPool(self.settings.webhook_concurrency)

    def enqueue_job(self, job_id: uuid.UUID, kind: str) -> None:
        self.wake.set()

    def deliver_webhook(self, delivery_id: uuid.UUID) -> None:
        self.webhooks.submit(delivery_id)

    def close(self) -> None:
        """Wait for deliveries in flight at most one attempt deadline (plus a little for bookkeeping)."""
        self.webhooks.close(self.settings.webhook_timeout_seconds + 2.0)

    def queue_depth(self) -> int | None:
        return None


class EmbeddedRunner:
    def __init__(self, settings: Settings | None = None, *, poll_seconds: float = 1.0) -> None:
        wiring.load()
        self.settings = settings or get_settings()
        self.worker_id = f"{OWNER_PREFIX}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_seconds = poll_seconds
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.publisher = EmbeddedPublisher(self.wake, self.settings)
        self.jobs_run = 0
        self._threads = [
            threading.Thread(target=self._job_loop, name="lethe-embedded-jobs", daemon=True),
            threading.Thread(target=self._housekeeping_loop, name="lethe-embedded-sweeper", daemon=True),
        ]

    def start(self) -> EmbeddedRunner:
        self.recover()
        for thread in self._threads:
            thread.start()
        log.info("embedded worker started", worker=self.worker_id)
        return self

    def recover(self) -> list[tuple[uuid.UUID, JobState]]:
        """Jobs an earlier `lethe serve` was running when it stopped go back to the queue (attempt+1)."""
        with unit_of_work() as session:
            taken = lifecycle.requeue_expired(session, orphans_of=OWNER_PREFIX, keep_owner=self.worker_id)
        if taken:
            log.info("recovered interrupted jobs", jobs=[str(j) for j, _ in taken])
        return taken

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful: the running job stops at its next step and returns to the queue."""
        self.stopping.set()
        self.wake.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=timeout)
        self.publisher.close()
        log.info("embedded worker stopped", worker=self.worker_id)

    def run_one(self) -> str | None:
        """Lease and run the next job, if any (also used by tests). Returns the outcome or None."""
        with unit_of_work() as session:
            held = lifecycle.lease_next(session, self.worker_id, self.settings.job_lease_seconds)
        if held is None:
            return None
        outcome = run_leased(held, self.settings, shutdown=self.stopping)
        self.jobs_run += 1
        return outcome

    def _job_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                outcome = self.run_one()
            except Exception as exc:
                if not is_db_outage(exc):
                    log.exception("embedded job loop error")
                outcome = None
            if outcome is None:
                self.wake.wait(self.poll_seconds)
                self.wake.clear()

    def _housekeeping_loop(self) -> None:
        interval = min(self.settings.sweep_interval_seconds, 5.0)
        while not self.stopping.is_set():
            try:
                report = sweep(self.publisher, self.settings)
                if report.published or report.requeued or report.schedule_runs:
                    self.wake.set()
            except Exception:
                log.exception("embedded sweep failed")
            self.stopping.wait(interval)
