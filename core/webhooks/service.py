"""Webhook endpoints (register, list, delete) and deliveries: fan-out of events, signed POSTs with retries.

`deliver` is a small boundary of its own (claim → send → record, each its own transaction) so that no
database transaction stays open across an HTTP call; it is what the Celery task and the embedded runner's
delivery pool (`core.webhooks.dispatch`) run. The send itself is `core.webhooks.transport.post`: pinned to
the checked addresses, bounded by one overall deadline.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpcore
from sqlalchemy.orm import Session

from core.audit.service import append
from core.config import Settings, get_settings
from core.db import unit_of_work
from core.errors import found
from core.jobs.retry import backoff_seconds
from core.logging import get_logger
from core.timeutil import utcnow
from core.webhooks import repository, transport
from core.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from core.webhooks.schemas import AttemptOut, DeliveryOut, WebhookCreate
from core.webhooks.signing import headers, new_secret
from core.webhooks.targets import Resolver, TargetRefused, check_url, resolve_target

log = get_logger(__name__)


def create(session: Session, *, tenant_id: uuid.UUID, actor: str, body: WebhookCreate,
           settings: Settings | None = None) -> WebhookEndpoint:
    settings = settings or get_settings()
    check_url(body.url, allow_private=settings.webhook_allow_private)
    endpoint = WebhookEndpoint(tenant_id=tenant_id, url=body.url, events=body.events,
                               secret=body.secret or new_secret(), description=body.description,
                               created_by=actor)
    session.add(endpoint)
    session.flush()
    append(session, action="webhook.created", subject=f"webhook:{endpoint.id}", actor=actor, tenant_id=tenant_id,
           payload={"url": endpoint.url, "events": endpoint.events})
    return endpoint


def get(session: Session, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = found(repository.get_endpoint(session, tenant_id, endpoint_id), f"webhook endpoint {endpoint_id}")
    return endpoint


def delete(session: Session, *, tenant_id: uuid.UUID, actor: str, endpoint_id: uuid.UUID) -> None:
    endpoint = get(session, tenant_id, endpoint_id)
    append(session, action="webhook.deleted", subject=f"webhook:{endpoint.id}", actor=actor, tenant_id=tenant_id,
           payload={"url": endpoint.url})
    session.delete(endpoint)


def delivery_log(session: Session, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> list[DeliveryOut]:
    get(session, tenant_id, endpoint_id)
    rows = repository.deliveries_of(session, endpoint_id)
    attempts = repository.attempts_of(session, [r.id for r in rows])
    return [
        DeliveryOut(
            id=r.id, event_id=r.event_id, event_type=r.event_type, state=r.state.value, attempts=r.attempts,
            next_attempt_at=r.next_attempt_at, last_status_code=r.last_status_code, last_error=r.last_error,
            delivered_at=r.delivered_at, created_at=r.created_at,
            log=[AttemptOut(attempt=a.attempt, at=a.at, status_code=a.status_code, error=a.error,
                            duration_ms=a.duration_ms) for a in attempts[r.id]],
        )
        for r in rows
    ]


def fan_out(session: Session, event: dict[str, Any]) -> list[uuid.UUID]:
    """One pending delivery per subscribed endpoint of the event's tenant (idempotent per event id)."""
    tenant_id = uuid.UUID(event["tenant_id"])
    ids = []
    for endpoint in repository.subscribed(session, tenant_id, event["type"]):
        if repository.delivery_exists(session, endpoint.id, event["id"]):
            continue
        delivery = WebhookDelivery(endpoint_id=endpoint.id, tenant_id=tenant_id, event_id=event["id"],
                                   event_type=event["type"], payload=event, state=DeliveryState.pending)
        session.add(delivery)
        session.flush()
        ids.append(delivery.id)
    return ids


def due_retries(session: Session, now: datetime) -> list[uuid.UUID]:
    return repository.due(session, now)


def body_of(event: dict[str, Any]) -> bytes:
    """The Standard Webhooks payload: {type, timestamp, data}."""
    return json.dumps({"type": event["type"], "timestamp": event["created_at"], "data": event["data"]},
                      separators=(",", ":"), sort_keys=True).encode()


def deliver(delivery_id: uuid.UUID | str, *, settings: Settings | None = None,
            resolver: Resolver | None = None) -> str:
    """Claim the delivery, POST it once, log the attempt; schedule a retry or give up. Returns the state.

    The host is resolved once and the POST connects to the addresses that passed the target check; the
    whole attempt (connect, TLS, send, response head) ends by `webhook_timeout_seconds`.
    """
    settings = settings or get_settings()
    delivery_id = uuid.UUID(str(delivery_id))
    now = utcnow()
    with unit_of_work() as session:
        delivery = repository.lock_delivery(session, delivery_id)
        if delivery is None or delivery.state != DeliveryState.pending:
            return delivery.state.value if delivery else "missing"
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            return "not-due"
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        assert endpoint is not None
        # Claim: nobody else sends this delivery until our attempt had time to finish.
        delivery.next_attempt_at = now + timedelta(seconds=settings.webhook_timeout_seconds + 30)
        attempt = delivery.attempts + 1
        url, secret, event = endpoint.url, endpoint.secret, dict(delivery.payload)

    status: int | None = None
    error: str | None = None
    started = time.monotonic()
    try:
        target = resolve_target(url, allow_private=settings.webhook_allow_private, resolver=resolver)
        body = body_of(event)
        sent_headers = headers(secret, event["id"], int(time.time()), body)
        status = transport.post(target, body, sent_headers, deadline_seconds=settings.webhook_timeout_seconds)
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except TargetRefused as exc:
        error = exc.detail
    except httpcore.TimeoutException:
        error = f"timed out: no complete response head within {settings.webhook_timeout_seconds:g} s"
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    duration_ms = int((time.monotonic() - started) * 1000)

    with unit_of_work() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        session.add(WebhookAttempt(delivery_id=delivery_id, attempt=attempt, status_code=status, error=error,
                                   duration_ms=duration_ms))
        delivery.attempts = attempt
        delivery.last_status_code = status
        delivery.last_error = error
        if error is None:
            delivery.state = DeliveryState.delivered
            delivery.delivered_at = utcnow()
            delivery.next_attempt_at = None
        elif attempt >= settings.webhook_max_attempts:
            delivery.state = DeliveryState.failed
            delivery.next_attempt_at = None
        else:
            delay = backoff_seconds(attempt, settings.webhook_backoff_seconds)
            delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)
        log.info("webhook attempt", delivery_id=str(delivery_id), attempt=attempt, status=status, error=error,
                 state=delivery.state.value)
        return delivery.state.value
