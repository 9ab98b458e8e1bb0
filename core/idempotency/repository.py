"""Queries on idempotency_keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.idempotency.models import IdempotencyRecord


def get_for_update(session: Session, tenant_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
    return session.scalars(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key)
        .with_for_update()
    ).first()


def set_response(session: Session, record_id: uuid.UUID, status: int, body: object, headers: dict[str, str]) -> int:
    result = session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.response_status.is_(None))
        .values(response_status=status, response_body=body, response_headers=headers)
    )
    return result.rowcount  # type: ignore[attr-defined, no-any-return]


def delete_unfinished(session: Session, record_id: uuid.UUID) -> None:
    session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id, IdempotencyRecord.response_status.is_(None))
    )


def delete_expired(session: Session, now: datetime) -> int:
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now))
    return result.rowcount  # type: ignore[attr-defined, no-any-return]
