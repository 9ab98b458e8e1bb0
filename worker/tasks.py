"""Task shells: each one calls a core service and nothing else."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from celery.signals import worker_shutting_down

from worker.app import app

# Set on warm shutdown (SIGTERM): the running job stops at its next step and goes back to the queue.
SHUTDOWN = threading.Event()


@worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    SHUTDOWN.set()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.task(name="lethe.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str, lane: str | None = None) -> str:
    """A doorbell: lease the NEXT job of `lane` (by priority, due, age) and run it — not necessarily `job_id`,
    which is only leased when nothing else is visible (see core.jobs.runner.wake)."""
    from core.jobs.runner import wake
    from core.jobs.states import LANES, JobKind, Lane

    if lane is None:  # a doorbell published before lanes travelled with it
        import uuid

        from core.db import unit_of_work
        from core.jobs.models import Job

        with unit_of_work() as session:
            job = session.get(Job, uuid.UUID(job_id))
            lane = LANES[JobKind(job.kind)] if job is not None else Lane.gpu
    return wake([lane], worker_id=worker_id(), shutdown=SHUTDOWN, rung_for=job_id)


@app.task(name="lethe.deliver_webhook", acks_late=True, reject_on_worker_lost=True)
def deliver_webhook(delivery_id: str) -> str:
    from core.webhooks.service import deliver

    return deliver(delivery_id)


@app.task(name="lethe.sweep")
def sweep() -> dict[str, int]:
    from core.jobs.services import sweep as run_sweep
    from worker.publisher import CeleryPublisher

    return run_sweep(CeleryPublisher(app)).as_dict()
