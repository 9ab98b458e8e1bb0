"""Publishes outbox doorbells as Celery messages (only the id travels; the row is the truth)."""

from __future__ import annotations

import uuid

from celery import Celery

from worker.app import GPU_QUEUE


class CeleryPublisher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def enqueue_job(self, job_id: uuid.UUID, kind: str) -> None:
        self.app.send_task("lethe.run_job", args=[str(job_id)], queue=GPU_QUEUE, retry=False)

    def deliver_webhook(self, delivery_id: uuid.UUID) -> None:
        self.app.send_task("lethe.deliver_webhook", args=[str(delivery_id)], retry=False)

    def queue_depth(self) -> int | None:
        try:
            with self.app.connection_for_write() as conn:
                client = conn.default_channel.client
                return int(client.llen(GPU_QUEUE))
        except Exception:
            return None
