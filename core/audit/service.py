"""Append to and verify the audit chain. `append` runs inside the caller's transaction (never commits)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from core.audit import repository
from core.audit.chain import GENESIS_HASH, canonical_json, event_hash, record_json_around_seq
from core.audit.models import AuditEvent
from core.errors import ValidationFailed
from core.pagination import decode_cursor, encode_cursor
from core.timeutil import utcnow


@dataclass(frozen=True)
class Appended:
    """The link an `append` wrote: where it sits in the chain."""

    seq: int
    hash: str


_DEFERRED = "lethe_audit_deferred"


def append_at_commit(
    session: Session,
    *,
    action: str,
    subject: str,
    actor: str,
    tenant_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """`append`, written as the transaction's last statement, right before COMMIT (or before the next
    immediate `append` of this session, so the chain keeps the order of the calls). The writer lock is then
    held for one call and the commit — not across the rest of the caller's work. For callers that do not need
    the event's seq/hash (the submission hot path). Dropped with the transaction on rollback."""
    session.info.setdefault(_DEFERRED, []).append(
        {"action": action, "subject": subject, "actor": actor, "tenant_id": tenant_id, "payload": payload}
    )


def _write_deferred(session: Session) -> None:
    for event in session.info.pop(_DEFERRED, ()):
        _append(session, **event)


@sa_event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if _DEFERRED in session.info:
        _write_deferred(session)


@sa_event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(_DEFERRED, None)


def append(
    session: Session,
    *,
    action: str,
    subject: str,
    actor: str,
    tenant_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> Appended:
    """Add the next event of the chain now (after any `append_at_commit` events of this transaction).
    The writer lock is held until the caller's transaction ends."""
    if _DEFERRED in session.info:
        _write_deferred(session)
    return _append(session, action=action, subject=subject, actor=actor, tenant_id=tenant_id, payload=payload)


def _append(
    session: Session,
    *,
    action: str,
    subject: str,
    actor: str,
    tenant_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> Appended:
    """Write the next event of the chain.

    Everything that does not need the lock happens first (payload normalisation, flushing the caller's
    pending ORM changes). On Postgres the lock, the read of the last link and the insert are one call
    (lethe_audit_append, migration 0005), so the lock is held for that call and whatever follows it."""
    # Normalize the payload through canonical JSON so what is hashed is exactly what is stored.
    clean: dict[str, Any] = json.loads(canonical_json(payload or {}))
    session.flush()
    at = utcnow()
    if repository.can_append_server_side(session):
        prefix, suffix = record_json_around_seq(
            at=at, tenant_id=tenant_id, actor=actor, action=action, subject=subject, payload=clean
        )
        row = repository.append_server_side(session, {
            "at": at, "tenant_id": tenant_id, "actor": actor, "action": action, "subject": subject,
            "payload": clean, "prefix": prefix, "suffix": suffix,
        })
        return Appended(int(row.seq), str(row.hash))
    repository.lock_writer(session)
    last = repository.last_link(session)
    seq = (last.seq if last else 0) + 1
    prev = last.hash if last else GENESIS_HASH
    digest = event_hash(
        prev_hash=prev, seq=seq, at=at, tenant_id=tenant_id, actor=actor, action=action, subject=subject,
        payload=clean,
    )
    repository.insert_event(session, {
        "seq": seq, "at": at, "tenant_id": tenant_id, "actor": actor, "action": action, "subject": subject,
        "payload": clean, "prev_hash": prev, "hash": digest,
    })
    return Appended(seq, digest)


def list_page(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    subject: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[AuditEvent], str | None]:
    """A tenant's events, oldest first, after `cursor` (a seq); the next cursor when more follow."""
    after_seq = None
    if cursor:
        value = decode_cursor(cursor).get("s")
        if not isinstance(value, int) or value < 0:
            raise ValidationFailed("the cursor is not one this API issued", field="cursor")
        after_seq = value
    stmt = repository.query_events(
        tenant_id=tenant_id, subject=subject, action=action, since=since, until=until, after_seq=after_seq,
        limit=limit + 1,
    )
    rows = list(session.scalars(stmt))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor({"s": rows[-1].seq})


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken_seq: int | None


def verify(session: Session) -> ChainReport:
    """Recompute every hash in order; report the first event whose link or content does not match."""
    prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for event in repository.iter_chain(session):
        recomputed = event_hash(
            prev_hash=prev,
            seq=event.seq,
            at=event.at,
            tenant_id=event.tenant_id,
            actor=event.actor,
            action=event.action,
            subject=event.subject,
            payload=event.payload,
        )
        if event.seq != expected_seq or event.prev_hash != prev or event.hash != recomputed:
            return ChainReport(ok=False, checked=checked, first_broken_seq=min(event.seq, expected_seq))
        prev = event.hash
        expected_seq += 1
        checked += 1
    return ChainReport(ok=True, checked=checked, first_broken_seq=None)
