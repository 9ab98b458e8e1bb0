"""What the webhooks domain adds to the job runtime: publishing webhook events from the outbox, and the
`webhook_retries` background service (deliveries whose backoff has passed)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from core.config import Settings
from core.jobs.services import register_service
from core.outbox.relay import Publisher, register_topic
from core.outbox.service import WEBHOOK_EVENT
from core.timeutil import utcnow
from core.webhooks.service import due_retries, fan_out


def _fan_out(session: Session, publisher: Publisher, payload: dict[str, Any]) -> list[uuid.UUID]:
    return fan_out(session, payload)


def _retries(session: Session, publisher: Publisher, settings: Settings) -> dict[str, int]:
    due = due_retries(session, utcnow())
    for delivery_id in due:
        publisher.deliver_webhook(delivery_id)
    return {"webhook_retries": len(due)}


register_topic(WEBHOOK_EVENT, _fan_out)
register_service("webhook_retries", _retries)
