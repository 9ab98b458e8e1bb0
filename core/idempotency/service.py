"""Idempotency keys with Stripe's semantics, per tenant.

- first request with a key: claimed (a row with no response yet), then run; its response is stored in the
  SAME transaction as its effects, so "stored response" and "effects happened" cannot disagree;
- same key, same method + path + body: the stored response is replayed;
- same key, anything else different: 422 (IdempotencyKeyReused);
- same key while the first is still running: 409 (IdempotencyInFlight);
- keys live `idempotency_ttl_hours` (>= 24 h); a claim whose process died is taken over after LOCK_SECONDS.

The claim is committed on its own, before the work, by the boundary (api/idempotency.py): that is what
makes a concurrent duplicate see "in flight" instead of running a second time. Never commits itself.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.errors import IdempotencyInFlight, IdempotencyKeyReused
from core.idempotency import repository
from core.idempotency.models import IdempotencyRecord
from core.timeutil import utcnow

LOCK_SECONDS = 60


@dataclass(frozen=True)
class Claimed:
    record_id: uuid.UUID


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any
    headers: dict[str, str]


def fingerprint(method: str, path: str, body: Any) -> str:
    """sha256 over method, path and the canonical form of the (parsed) body."""
    return hashlib.sha256(canonical_json({"m": method.upper(), "p": path, "b": body}).encode()).hexdigest()


def claim_new(
    session: Session, *, tenant_id: uuid.UUID, key: str, fp: str, method: str, path: str, ttl_hours: int
) -> Claimed:
    """The common case first: insert the claim. IntegrityError (flush) = the key exists: call `begin`."""
    now = utcnow()
    record = IdempotencyRecord(
        tenant_id=tenant_id, key=key, fingerprint=fp, method=method.upper(), path=path[:500],
        created_at=now, locked_until=now + timedelta(seconds=LOCK_SECONDS),
        expires_at=now + timedelta(hours=ttl_hours),
    )
    session.add(record)
    session.flush()
    return Claimed(record.id)


def begin(
    session: Session, *, tenant_id: uuid.UUID, key: str, fp: str, method: str, path: str, ttl_hours: int
) -> Claimed | Replay:
    """Claim `key` for this request, or return the stored response to replay. Raises 409/422 errors."""
    now = utcnow()
    existing = repository.get_for_update(session, tenant_id, key)
    if existing is not None and existing.expires_at <= now:
        session.delete(existing)
        session.flush()
        existing = None
    if existing is not None:
        if existing.fingerprint != fp:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request (method, path or body); use a new key"
            )
        if existing.response_status is not None:
            return Replay(existing.response_status, existing.response_body, dict(existing.response_headers or {}))
        if existing.locked_until > now:
            raise IdempotencyInFlight("the first request with this Idempotency-Key is still being processed; "
                                      "retry in a moment")
        # Abandoned claim (its process died before committing anything): take it over.
        existing.locked_until = now + timedelta(seconds=LOCK_SECONDS)
        return Claimed(existing.id)
    # IntegrityError here = a concurrent first request: the boundary retries and sees it
    return claim_new(session, tenant_id=tenant_id, key=key, fp=fp, method=method, path=path, ttl_hours=ttl_hours)


def finish(session: Session, claimed: Claimed, status: int, body: Any, headers: dict[str, str]) -> None:
    """Store the response in the caller's (work) transaction."""
    repository.set_response(session, claimed.record_id, status, body, headers)


def release(session: Session, claimed: Claimed) -> None:
    """The work failed and was rolled back: forget the claim so that a retry runs again."""
    repository.delete_unfinished(session, claimed.record_id)


def purge_expired(session: Session) -> int:
    """Delete expired keys (the sweeper may call this periodically)."""
    return repository.delete_expired(session, utcnow())
