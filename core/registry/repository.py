"""Queries on registered models (always tenant-scoped)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Row, Uuid, and_, bindparam, or_, select
from sqlalchemy.orm import Session

from core.db import for_update
from core.registry.models import ModelStatus, RegisteredModel


def get(session: Session, tenant_id: uuid.UUID, model_id: uuid.UUID) -> RegisteredModel | None:
    return session.scalars(
        select(RegisteredModel).where(RegisteredModel.id == model_id, RegisteredModel.tenant_id == tenant_id)
    ).first()


_m = RegisteredModel.__table__.c
_STATUS_OF = select(_m.id, _m.status, _m.status_reason, _m.fingerprint, _m.head_version).where(
    # typed: the FK column's own type is only known once the referenced table is resolved
    _m.id == bindparam("model_id"), _m.tenant_id == bindparam("tenant_id", type_=Uuid())
)


def status_of(session: Session, tenant_id: uuid.UUID, model_id: uuid.UUID) -> Row | None:  # type: ignore[type-arg]
    """(id, status, status_reason, fingerprint, head_version) of a tenant's model: one Core SELECT
    (submission hot path)."""
    return session.execute(_STATUS_OF, {"model_id": model_id, "tenant_id": tenant_id}).first()


def by_name(session: Session, tenant_id: uuid.UUID, name: str) -> RegisteredModel | None:
    return session.scalars(
        select(RegisteredModel).where(RegisteredModel.tenant_id == tenant_id, RegisteredModel.name == name)
    ).first()


def list_models(
    session: Session, tenant_id: uuid.UUID, *, limit: int, status: ModelStatus | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[RegisteredModel]:
    stmt = select(RegisteredModel).where(RegisteredModel.tenant_id == tenant_id)
    if status is not None:
        stmt = stmt.where(RegisteredModel.status == status)
    if after is not None:
        created, mid = after
        stmt = stmt.where(or_(RegisteredModel.created_at < created,
                              and_(RegisteredModel.created_at == created, RegisteredModel.id < mid)))
    stmt = stmt.order_by(RegisteredModel.created_at.desc(), RegisteredModel.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def lock(session: Session, tenant_id: uuid.UUID, model_id: uuid.UUID) -> RegisteredModel | None:
    """The model row, locked (FOR UPDATE on Postgres, the database write lock on SQLite): its head, versions and
    settings change one writer at a time."""
    stmt = select(RegisteredModel).where(RegisteredModel.id == model_id, RegisteredModel.tenant_id == tenant_id)
    return session.scalars(for_update(session, stmt)).first()
