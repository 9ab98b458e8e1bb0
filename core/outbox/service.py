"""Write outbox rows inside the caller's transaction (never commits)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.outbox.models import OutboxMessage
from core.timeutil import utcnow

JOB_ENQUEUE = "job.enqueue"
WEBHOOK_EVENT = "webhook.event"


def emit(session: Session, topic: str, payload: dict[str, Any]) -> OutboxMessage:
    message = OutboxMessage(**outbox_values(topic, payload))
    session.add(message)
    return message


def outbox_values(topic: str, payload: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """Column values of an outbox row, for callers that insert with Core in their own statement."""
    return {"topic": topic, "payload": payload, "created_at": now or utcnow()}


def webhook_event(session: Session, event_type: str, tenant_id: uuid.UUID, data: dict[str, Any]) -> None:
    """Announce an event to the tenant's webhook endpoints (delivered by the outbox relay after commit)."""
    emit(session, WEBHOOK_EVENT, {"id": f"evt_{uuid.uuid4().hex}", "type": event_type, "tenant_id": str(tenant_id),
                                  "created_at": utcnow().isoformat(), "data": data})
