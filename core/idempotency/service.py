"""Idempotency keys with Stripe's semantics, per tenant.

- first request with a key: run; the key is stored WITH its response in the SAME transaction as its effects,
  so "stored response" and "effects happened" cannot disagree;
- same key, same method + path + body: the stored response is replayed;
- same key, anything else different: 422 (IdempotencyKeyReused);
- same key while the first is still running: 409 (IdempotencyInFlight);
- keys live `idempotency_ttl_hours` (>= 24 h).

One transaction: `start` runs first in the request's own transaction. On Postgres it takes a
per-key advisory lock with pg_try_advisory_xact_lock (never waits) and reads the stored key in the same
statement: a concurrent request holding the key gets 409 at once. The work runs, then `finish` inserts the
key WITH its response, and the boundary commits both at once. A request that fails rolls everything back,
key included: nothing to release. The unique (tenant_id, key) index is the last word: if a concurrent first
request committed the key between our snapshot and our lock (a microsecond window), the insert finds it
and the request answers 409 (retry → replay), its work rolled back — never a second effect.

Rows of the older two-transaction protocol (a claim committed before the work, no response yet) may still
be in a database written before it: such a claim reads as "in flight" (409) until its `locked_until` lapses,
then is taken over (`Claimed`). Never commits itself.
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
from core.timeutil import utcnow

IN_FLIGHT = "the first request with this Idempotency-Key is still being processed; retry in a moment"


@dataclass(frozen=True)
class Claimed:
    record_id: uuid.UUID


@dataclass(frozen=True)
class Fresh:
    """The key is free: run the work, then `finish` inserts the key with its response."""

    tenant_id: uuid.UUID
    key: str
    fp: str
    method: str
    path: str
    ttl_hours: int


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any
    headers: dict[str, str]


def fingerprint(method: str, path: str, body: Any) -> str:
    """sha256 over method, path and the canonical form of the (parsed) body."""
    return hashlib.sha256(canonical_json({"m": method.upper(), "p": path, "b": body}).encode()).hexdigest()


def start(
    session: Session, *, tenant_id: uuid.UUID, key: str, fp: str, method: str, path: str, ttl_hours: int
) -> Fresh | Claimed | Replay:
    """In the request's transaction, before the work: Fresh (run it), Claimed (take over an abandoned
    claim), Replay (answer with the stored response). Raises 409 (in flight) or 422 (key reused)."""
    free, existing = repository.lock_and_find(session, tenant_id, key)
    if not free:
        raise IdempotencyInFlight(IN_FLIGHT)
    fresh = Fresh(tenant_id, key, fp, method.upper(), path[:500], ttl_hours)
    if existing is None:
        return fresh
    now = utcnow()
    if existing.expires_at <= now:
        repository.delete_by_id(session, existing.id)
        return fresh
    if existing.fingerprint != fp:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request (method, path or body); use a new key"
        )
    if existing.response_status is not None:
        return Replay(existing.response_status, existing.response_body, dict(existing.response_headers or {}))
    if existing.locked_until > now:
        raise IdempotencyInFlight(IN_FLIGHT)
    # A claim row of the older two-transaction protocol whose process died: take it over.
    return Claimed(existing.id)


def finish(session: Session, claimed: Fresh | Claimed, status: int, body: Any, headers: dict[str, str]) -> None:
    """Store the response in the caller's (work) transaction: the key and the work's effects commit together.
    Raises 409 if a concurrent request with the key got there first (the caller's transaction must roll back)."""
    if isinstance(claimed, Claimed):
        stored = repository.set_response(session, claimed.record_id, status, body, headers) > 0
    else:
        now = utcnow()
        stored = repository.insert_completed(session, {
            "id": uuid.uuid4(), "tenant_id": claimed.tenant_id, "key": claimed.key, "fingerprint": claimed.fp,
            "method": claimed.method, "path": claimed.path, "response_status": status, "response_body": body,
            "response_headers": headers, "created_at": now, "locked_until": now,
            "expires_at": now + timedelta(hours=claimed.ttl_hours),
        })
    if not stored:
        raise IdempotencyInFlight("a concurrent request with this Idempotency-Key was processed first; "
                                  "retry to get its response")


def purge_expired(session: Session) -> int:
    """Delete expired keys (the sweeper may call this periodically)."""
    return repository.delete_expired(session, utcnow())
