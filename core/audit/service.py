"""Append to and verify the audit chain. `append` runs inside the caller's transaction (never commits)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from core.audit import checkpoints, repository
from core.audit.chain import GENESIS_HASH, canonical_json, event_hash, record_json_around_seq
from core.audit.models import AuditEvent
from core.config import Settings, get_settings
from core.logging import get_logger
from core.pagination import decode_seq_cursor, encode_cursor
from core.timeutil import utcnow

log = get_logger(__name__)


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
    after_seq = decode_seq_cursor(cursor) if cursor else None
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
    checked: int  # events whose hash this run recomputed (from the checkpoint on, or all of them when full)
    first_broken_seq: int | None
    problem: str | None = None  # "altered" | "truncated" | "checkpoint-forged"; None when ok
    head_seq: int = 0  # the newest event verified
    checkpoint: checkpoints.Checkpoint | None = None  # the signed checkpoint now covering the head


def verify(session: Session, settings: Settings | None = None, *, full: bool = False, sign_head: bool = True,
           use_store_head: bool = True) -> ChainReport:
    """Check the chain from its newest signed checkpoint on (from the genesis when `full`), and sign the head.

    1. The newest checkpoint (the database's or the object store's, whichever is newer) must carry this
       service's signature, and its event must still be in the chain with the hash it signed: if the newest
       events were deleted, the chain no longer reaches it (`truncated`).
    2. Every event after it must link to its predecessor and recompute (`altered` at the first that does not);
       with `full`, every event from the genesis on, and every checkpoint on the way must match.
    3. When all holds and `sign_head`, the head is signed as the next checkpoint (database and object store).
    Without `use_store_head` the object store's checkpoint is ignored (a backup or restored copy, which may
    legitimately end before the live chain's newest checkpoint).
    """
    settings = settings or get_settings()
    external = checkpoints.read_external_head(settings) if use_store_head else None
    anchors = [c for c in (repository.latest_checkpoint(session), external) if c]
    for anchor in anchors:
        if not checkpoints.is_authentic(settings, anchor):
            return ChainReport(ok=False, checked=0, first_broken_seq=None, problem="checkpoint-forged")
    anchor = max(anchors, key=lambda c: c.seq, default=None)
    prev, after = GENESIS_HASH, 0
    if anchor is not None and not full:
        at_anchor = repository.link_at(session, anchor.seq)
        if at_anchor is None or at_anchor.hash != anchor.hash:
            return _broken_at_anchor(session, anchor, at_anchor is None)
        prev, after = anchor.hash, anchor.seq
    expected_seq = after + 1
    signed = {c.seq: c.hash for c in repository.checkpoints_between(session, 0, None)} if full else {}
    checked = 0
    for event in repository.iter_chain(session, after=after):
        recomputed = event_hash(
            prev_hash=prev, seq=event.seq, at=event.at, tenant_id=event.tenant_id, actor=event.actor,
            action=event.action, subject=event.subject, payload=event.payload,
        )
        if (event.seq != expected_seq or event.prev_hash != prev or event.hash != recomputed
                or signed.get(event.seq, event.hash) != event.hash):
            return ChainReport(ok=False, checked=checked, first_broken_seq=min(event.seq, expected_seq),
                               problem="altered", head_seq=expected_seq - 1, checkpoint=anchor)
        prev = event.hash
        expected_seq += 1
        checked += 1
    head_seq = expected_seq - 1
    if anchor is not None and head_seq < anchor.seq:
        return ChainReport(ok=False, checked=checked, first_broken_seq=head_seq + 1, problem="truncated",
                           head_seq=head_seq, checkpoint=anchor)
    covering = anchor
    if sign_head and head_seq > 0 and (anchor is None or head_seq > anchor.seq):
        covering = _sign_head(session, settings, head_seq, prev)
    return ChainReport(ok=True, checked=checked, first_broken_seq=None, head_seq=head_seq, checkpoint=covering)


def _broken_at_anchor(session: Session, anchor: checkpoints.Checkpoint, missing: bool) -> ChainReport:
    if missing:
        last = repository.last_link(session)
        head = int(last.seq) if last else 0
        return ChainReport(ok=False, checked=0, first_broken_seq=head + 1 if head < anchor.seq else anchor.seq,
                           problem="truncated", head_seq=head, checkpoint=anchor)
    return ChainReport(ok=False, checked=0, first_broken_seq=anchor.seq, problem="altered", head_seq=anchor.seq,
                       checkpoint=anchor)


def _sign_head(session: Session, settings: Settings, seq: int, head_hash: str) -> checkpoints.Checkpoint:
    checkpoint = checkpoints.sign(settings, seq, head_hash, utcnow())
    repository.insert_checkpoint(session, checkpoint)
    try:
        checkpoints.write_external_head(settings, checkpoint)
    except Exception as exc:  # the object store is down: the database copy still protects the chain
        log.warning("audit head not written to the object store", error=type(exc).__name__)
    return checkpoint


def tenant_event_count(session: Session, tenant_id: uuid.UUID, through_seq: int) -> int:
    """How many of a tenant's events lie in the chain up to `through_seq`."""
    return repository.count_tenant_events(session, tenant_id, through_seq)
