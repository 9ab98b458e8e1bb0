"""Queries on audit_events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, Uuid, bindparam, insert, select, text
from sqlalchemy.orm import Session

from core.audit.models import AuditEvent
from core.db import JsonType, UtcDateTime

# Arbitrary constant naming the audit writer's Postgres advisory lock.
AUDIT_LOCK_KEY = 0x1E7E_A0D1


def lock_writer(session: Session) -> None:
    """Serialize audit writers until the end of the transaction (Postgres); SQLite has one writer anyway."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY})


_events = AuditEvent.__table__
_LAST_LINK = select(_events.c.seq, _events.c.hash).order_by(_events.c.seq.desc()).limit(1)
_INSERT = insert(_events)


def last_link(session: Session) -> Row | None:  # type: ignore[type-arg]
    """(seq, hash) of the newest event (Core, no ORM object): call with the writer lock held."""
    return session.execute(_LAST_LINK).first()


_APPEND_PG = text(
    "SELECT seq, hash FROM lethe_audit_append(:at, :tenant_id, :actor, :action, :subject, :payload, :prefix, :suffix)"
).bindparams(bindparam("at", type_=UtcDateTime()), bindparam("tenant_id", type_=Uuid()),
             bindparam("payload", type_=JsonType))


def can_append_server_side(session: Session) -> bool:
    """Postgres has lethe_audit_append() (migration 0005): lock, read the last link, insert — one call."""
    return session.get_bind().dialect.name == "postgresql"


def append_server_side(session: Session, values: dict[str, Any]) -> Row:  # type: ignore[type-arg]
    """(seq, hash) of the event lethe_audit_append() wrote; it holds the writer lock until the transaction ends."""
    return session.execute(_APPEND_PG, values).one()


def insert_event(session: Session, values: dict[str, Any]) -> None:
    session.execute(_INSERT, values)


def iter_chain(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    after = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def query_events(
    *,
    tenant_id: uuid.UUID | None = None,
    subject: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_seq: int | None = None,
    limit: int = 50,
) -> Select[tuple[AuditEvent]]:
    stmt = select(AuditEvent)
    if tenant_id is not None:
        stmt = stmt.where(AuditEvent.tenant_id == tenant_id)
    if subject is not None:
        stmt = stmt.where(AuditEvent.subject == subject)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    if after_seq is not None:
        stmt = stmt.where(AuditEvent.seq > after_seq)
    return stmt.order_by(AuditEvent.seq).limit(limit)
