"""Task shells: each one calls a core service and nothing else."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_shutting_down

from worker.app import app

# Set on warm shutdown (SIGTERM): the running erasure stops at its next step and goes back to the queue.
SHUTDOWN = threading.Event()


@worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    SHUTDOWN.set()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.task(name="lethe.run_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Any, job_id: str) -> str:
    from core.erasure.execution import execute

    try:
        return execute(job_id, worker_id=worker_id(), shutdown=SHUTDOWN)
    except SoftTimeLimitExceeded:
        # The attempt's lease lapses and the sweeper retries or fails the job with a reason.
        return "time-limit"


@app.task(name="lethe.deliver_webhook", acks_late=True, reject_on_worker_lost=True)
def deliver_webhook(delivery_id: str) -> str:
    from core.webhooks.service import deliver

    return deliver(delivery_id)


@app.task(name="lethe.sweep")
def sweep() -> dict[str, int]:
    from core.erasure.sweeper import sweep as run_sweep
    from worker.publisher import CeleryPublisher

    return run_sweep(CeleryPublisher(app)).as_dict()
