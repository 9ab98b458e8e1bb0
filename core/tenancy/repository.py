"""Queries on tenants and api_keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from core.tenancy.models import ApiKey, Tenant


def tenant_by_name(session: Session, name: str) -> Tenant | None:
    return session.scalars(select(Tenant).where(Tenant.name == name)).first()


def tenant_by_id(session: Session, tenant_id: uuid.UUID) -> Tenant | None:
    return session.get(Tenant, tenant_id)


_keys = ApiKey.__table__
_tenants = Tenant.__table__
_AUTH = (
    select(_keys.c.id, _keys.c.prefix, _keys.c.key_hash, _keys.c.scopes, _keys.c.revoked_at, _keys.c.last_used_at,
           _tenants.c.id.label("tenant_id"), _tenants.c.name.label("tenant_name"), _tenants.c.require_approval)
    .join_from(_keys, _tenants, _tenants.c.id == _keys.c.tenant_id)
    .where(_keys.c.prefix == bindparam("prefix"))
)
_TOUCH = update(_keys).where(_keys.c.id == bindparam("key_id")).values(last_used_at=bindparam("at"))


def auth_row(session: Session, prefix: str) -> Row | None:  # type: ignore[type-arg]
    """What authentication needs about a key and its tenant: one Core SELECT, no ORM objects (hot path)."""
    return session.execute(_AUTH, {"prefix": prefix}).first()


def touch_key(session: Session, key_id: uuid.UUID, at: datetime) -> None:
    session.execute(_TOUCH, {"key_id": key_id, "at": at})


def key_by_prefix(session: Session, prefix: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()


def keys_of_tenant(session: Session, tenant_id: uuid.UUID) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)))
