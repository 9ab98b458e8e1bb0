"""Queries on audit_events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, Uuid, bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit.checkpoints import Checkpoint
from core.audit.models import AuditCheckpoint, AuditEvent
from core.db import JsonType, UtcDateTime, sqlite_write_lock

# Arbitrary constant naming the audit writer's Postgres advisory lock.
AUDIT_LOCK_KEY = 0x1E7E_A0D1


def lock_writer(session: Session) -> None:
    """Serialize audit writers until the end of the transaction, before the chain's last link is read: an
    advisory transaction lock on Postgres, the database's write lock on SQLite (`core.db.sqlite_write_lock`)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY})
    sqlite_write_lock(session)  # a no-op but on SQLite


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


def iter_chain(session: Session, batch: int = 1000, after: int = 0) -> Iterator[AuditEvent]:
    """Events with seq > `after`, in order, `batch` rows at a time."""
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


def link_at(session: Session, seq: int) -> Row | None:  # type: ignore[type-arg]
    """(seq, hash) of event `seq`, if it exists."""
    return session.execute(select(_events.c.seq, _events.c.hash).where(_events.c.seq == seq)).first()


def count_tenant_events(session: Session, tenant_id: uuid.UUID, through_seq: int) -> int:
    stmt = select(func.count()).select_from(_events).where(_events.c.tenant_id == tenant_id,
                                                          _events.c.seq <= through_seq)
    return int(session.execute(stmt).scalar_one())


def _checkpoint(row: AuditCheckpoint) -> Checkpoint:
    return Checkpoint(row.seq, row.hash, row.at, row.key_id, row.signature)


def latest_checkpoint(session: Session) -> Checkpoint | None:
    row = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)).first()
    return _checkpoint(row) if row else None


def checkpoints_between(session: Session, after: int, through: int | None) -> list[Checkpoint]:
    stmt = select(AuditCheckpoint).where(AuditCheckpoint.seq > after)
    if through is not None:
        stmt = stmt.where(AuditCheckpoint.seq <= through)
    return [_checkpoint(r) for r in session.scalars(stmt.order_by(AuditCheckpoint.seq))]


def insert_checkpoint(session: Session, checkpoint: Checkpoint) -> None:
    """Insert, unless a concurrent verification already signed this head (same seq): then keep that one."""
    try:
        with session.begin_nested():
            session.execute(insert(AuditCheckpoint).values(
                seq=checkpoint.seq, hash=checkpoint.hash, at=checkpoint.at, key_id=checkpoint.key_id,
                signature=checkpoint.signature,
            ))
    except IntegrityError:
        pass
