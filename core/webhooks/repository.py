"""Queries on webhook endpoints, deliveries and attempts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from core.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint


def _pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def get_endpoint(session: Session, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    return session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id)
    ).first()


def list_endpoints(session: Session, tenant_id: uuid.UUID) -> list[WebhookEndpoint]:
    return list(session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ))


def subscribed(session: Session, tenant_id: uuid.UUID, event_type: str) -> list[WebhookEndpoint]:
    rows = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.enabled.is_(True))
    )
    return [e for e in rows if "*" in e.events or event_type in e.events]


def delivery_exists(session: Session, endpoint_id: uuid.UUID, event_id: str) -> bool:
    return session.scalars(
        select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint_id,
                                         WebhookDelivery.event_id == event_id)
    ).first() is not None


def lock_delivery(session: Session, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    stmt = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
    if _pg(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).first()


def due(session: Session, now: datetime, limit: int = 100) -> list[uuid.UUID]:
    """Pending deliveries whose retry time has come, or whose first doorbell seems lost (>30 s unclaimed)."""
    stmt = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.state == DeliveryState.pending,
            or_(
                WebhookDelivery.next_attempt_at <= now,
                and_(WebhookDelivery.next_attempt_at.is_(None),
                     WebhookDelivery.created_at < now - timedelta(seconds=30)),
            ),
        )
        .order_by(WebhookDelivery.created_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def deliveries_of(session: Session, endpoint_id: uuid.UUID, limit: int = 50) -> list[WebhookDelivery]:
    return list(session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.created_at.desc()).limit(limit)
    ))


def attempts_of(session: Session, delivery_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[WebhookAttempt]]:
    out: dict[uuid.UUID, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    if delivery_ids:
        rows = session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.attempt)
        )
        for row in rows:
            out[row.delivery_id].append(row)
    return out


def endpoint_of(session: Session, delivery_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalars(select(WebhookDelivery.endpoint_id).where(WebhookDelivery.id == delivery_id)).first()
