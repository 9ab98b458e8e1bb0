"""Publishes outbox doorbells as Celery messages to the lane of the job's kind (only ids travel; the job table
is the truth, and a doorbell only wakes a worker of that lane)."""

from __future__ import annotations

import uuid

from celery import Celery

from core.jobs.states import LANES, JobKind, Lane


class CeleryPublisher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def enqueue_job(self, job_id: uuid.UUID, kind: str) -> None:
        lane = LANES[JobKind(kind)].value
        self.app.send_task("lethe.run_job", args=[str(job_id)], kwargs={"lane": lane}, queue=lane, retry=False)

    def deliver_webhook(self, delivery_id: uuid.UUID) -> None:
        self.app.send_task("lethe.deliver_webhook", args=[str(delivery_id)], retry=False)

    def queue_depth(self) -> int | None:
        """Doorbells waiting in the broker, over all lanes (compared with all leasable jobs)."""
        try:
            with self.app.connection_for_write() as conn:
                client = conn.default_channel.client
                return sum(int(client.llen(lane.value)) for lane in Lane)
        except Exception:
            return None
