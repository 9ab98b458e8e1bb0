"""Queries on console_sessions (joined with the API key and tenant they act for)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from core.console.models import ConsoleSession
from core.tenancy.models import ApiKey, Tenant

_sessions = ConsoleSession.__table__
_keys = ApiKey.__table__
_tenants = Tenant.__table__

_BY_TOKEN = (
    select(_sessions.c.id, _sessions.c.last_seen_at, _sessions.c.revoked_at,
           _keys.c.id.label("key_id"), _keys.c.prefix, _keys.c.name.label("key_name"), _keys.c.scopes,
           _keys.c.revoked_at.label("key_revoked_at"),
           _tenants.c.id.label("tenant_id"), _tenants.c.name.label("tenant_name"), _tenants.c.require_approval)
    .join_from(_sessions, _keys, _keys.c.id == _sessions.c.api_key_id)
    .join(_tenants, _tenants.c.id == _sessions.c.tenant_id)
)


def add(session: Session, row: ConsoleSession) -> ConsoleSession:
    session.add(row)
    session.flush()
    return row


def by_token_hash(session: Session, token_hash: str) -> Row | None:  # type: ignore[type-arg]
    """The session, its key (scopes, revocation) and tenant in one SELECT."""
    return session.execute(_BY_TOKEN.where(_sessions.c.token_hash == token_hash)).first()


def touch(session: Session, session_id: uuid.UUID, at: datetime) -> None:
    session.execute(update(_sessions).where(_sessions.c.id == session_id).values(last_seen_at=at))


def revoke(session: Session, session_id: uuid.UUID, at: datetime, reason: str) -> bool:
    result = session.execute(
        update(_sessions).where(_sessions.c.id == session_id, _sessions.c.revoked_at.is_(None))
        .values(revoked_at=at, revoked_reason=reason)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def revoke_of_key(session: Session, key_id: uuid.UUID, at: datetime, reason: str) -> int:
    result = session.execute(
        update(_sessions).where(_sessions.c.api_key_id == key_id, _sessions.c.revoked_at.is_(None))
        .values(revoked_at=at, revoked_reason=reason)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def list_open(session: Session, tenant_id: uuid.UUID | None = None) -> list[Row]:  # type: ignore[type-arg]
    stmt = _BY_TOKEN.add_columns(_sessions.c.created_at).where(_sessions.c.revoked_at.is_(None))
    if tenant_id is not None:
        stmt = stmt.where(_sessions.c.tenant_id == tenant_id)
    return list(session.execute(stmt.order_by(_sessions.c.created_at)))
