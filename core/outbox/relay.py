"""The outbox relay: publishes committed, unsent outbox rows through a Publisher, then marks them sent.

Publishing happens before the row is marked (inside the same transaction), so a crash in between repeats a
publication — at-least-once. That is safe: a job doorbell only wakes a worker (which leases under a fencing
token), a webhook event fans out into deliveries keyed by (endpoint, event id).

What a topic means is registered by the package that owns it (`register_topic`): job doorbells by the job
runtime, webhook events by the webhooks domain; the relay itself knows no domain.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from core.logging import get_logger
from core.outbox.models import OutboxMessage
from core.timeutil import utcnow

log = get_logger(__name__)


class Publisher(Protocol):
    """How the relay reaches workers: Celery in production, the embedded runner's wake-up otherwise."""

    def enqueue_job(self, job_id: uuid.UUID, kind: str) -> None: ...

    def deliver_webhook(self, delivery_id: uuid.UUID) -> None: ...


# A topic's publisher: publishes one row's payload; returns webhook delivery ids to dispatch after commit.
TopicHandler = Callable[[Session, Publisher, dict[str, Any]], list[uuid.UUID]]
_TOPICS: dict[str, TopicHandler] = {}


def register_topic(topic: str, handler: TopicHandler) -> None:
    _TOPICS[topic] = handler


def pending(session: Session, limit: int) -> list[OutboxMessage]:
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.published_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def relay(session: Session, publisher: Publisher, *, limit: int = 200) -> int:
    """Publish up to `limit` unsent rows; returns how many were published. Never commits."""
    sent = 0
    deliveries: list[uuid.UUID] = []
    for message in pending(session, limit):
        handler = _TOPICS.get(message.topic)
        if handler is None:
            # Not known in this process (core.wiring.load() not called, or an old topic): leave it unsent.
            log.warning("no publisher for outbox topic; left for later", topic=message.topic, id=message.id)
            continue
        try:
            deliveries.extend(handler(session, publisher, message.payload))
        except Exception as exc:
            # Broker down: leave the row for the next sweep; one bad row must not block the rest.
            message.attempts += 1
            message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            log.warning("outbox publish failed", topic=message.topic, id=message.id, error=message.last_error)
            if _broker_down(exc):
                break
            continue
        message.published_at = utcnow()
        sent += 1
    if deliveries:
        # The delivery rows exist for others only once the caller commits: dispatch then, not before
        # (dispatching earlier made the deliverer find nothing and wait for the next retry sweep, ~30 s).
        # A rollback drops the rows and the dispatch together.
        event.listen(session, "after_commit", lambda _s: _dispatch(publisher, deliveries), once=True)
    return sent


def _dispatch(publisher: Publisher, deliveries: list[uuid.UUID]) -> None:
    for delivery_id in deliveries:
        try:
            publisher.deliver_webhook(delivery_id)
        except Exception as exc:  # the retry sweep delivers what could not be dispatched now
            log.warning("webhook dispatch failed", delivery_id=str(delivery_id), error=str(exc)[:500])


def _broker_down(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError | OSError | TimeoutError) or "Connection" in type(exc).__name__
