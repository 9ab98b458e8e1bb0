"""Append to and verify the audit chain. `append` runs inside the caller's transaction (never commits)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.audit import repository
from core.audit.chain import GENESIS_HASH, canonical_json, event_hash
from core.timeutil import utcnow


@dataclass(frozen=True)
class Appended:
    """The link an `append` wrote: where it sits in the chain."""

    seq: int
    hash: str


def append(
    session: Session,
    *,
    action: str,
    subject: str,
    actor: str,
    tenant_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> Appended:
    """Add the next event of the chain. The writer lock is held until the caller's transaction ends.

    Everything that does not need the lock happens first (payload normalisation, flushing the caller's
    pending ORM changes), so the lock is held for three statements plus whatever the caller does after."""
    # Normalize the payload through canonical JSON so what is hashed is exactly what is stored.
    clean: dict[str, Any] = json.loads(canonical_json(payload or {}))
    session.flush()
    repository.lock_writer(session)
    last = repository.last_link(session)
    seq = (last.seq if last else 0) + 1
    prev = last.hash if last else GENESIS_HASH
    at = utcnow()
    digest = event_hash(
        prev_hash=prev, seq=seq, at=at, tenant_id=tenant_id, actor=actor, action=action, subject=subject,
        payload=clean,
    )
    repository.insert_event(session, {
        "seq": seq, "at": at, "tenant_id": tenant_id, "actor": actor, "action": action, "subject": subject,
        "payload": clean, "prev_hash": prev, "hash": digest,
    })
    return Appended(seq, digest)


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
