"""Write outbox rows inside the caller's transaction (never commits)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.outbox.models import OutboxMessage

JOB_ENQUEUE = "job.enqueue"
WEBHOOK_EVENT = "webhook.event"


def emit(session: Session, topic: str, payload: dict[str, Any]) -> OutboxMessage:
    message = OutboxMessage(topic=topic, payload=payload)
    session.add(message)
    return message
