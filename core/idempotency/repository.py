"""Queries on idempotency_keys."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Row, bindparam, column, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.idempotency.models import IdempotencyRecord

_keys = IdempotencyRecord.__table__
# Namespace (first key) of the per-key transaction-scoped advisory locks: separate from the audit writer's
# one-bigint lock space. The second key is 32 bits of sha256(tenant, key); a collision between two keys
# in flight at the same moment only makes one of them answer 409 "retry in a moment".
KEY_LOCK_NAMESPACE = 0x1DE4

_STORED = (_keys.c.id, _keys.c.fingerprint, _keys.c.response_status, _keys.c.response_body,
           _keys.c.response_headers, _keys.c.locked_until, _keys.c.expires_at)
_FIND = select(*_STORED).where(_keys.c.tenant_id == bindparam("t"), _keys.c.key == bindparam("k"))
# One round trip: try the key's lock, and read the stored row. MATERIALIZED: the lock is tried exactly once.
_LOCK_AND_FIND_PG = text(
    "WITH l AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(:ns, :h) AS got) "
    "SELECT l.got, k.id, k.fingerprint, k.response_status, k.response_body, k.response_headers, "
    "k.locked_until, k.expires_at FROM l LEFT JOIN idempotency_keys AS k ON k.tenant_id = :t AND k.key = :k"
).columns(column("got", Boolean), *_STORED)


def _lock_id(tenant_id: uuid.UUID, key: str) -> int:
    return int.from_bytes(hashlib.sha256(tenant_id.bytes + key.encode()).digest()[:4], "big", signed=True)


def lock_and_find(session: Session, tenant_id: uuid.UUID, key: str) -> tuple[bool, Row | None]:  # type: ignore[type-arg]
    """Take the key's lock for this transaction if nobody holds it (Postgres; never waits) and read the key's
    stored row. (False, _): another transaction holds the key right now. SQLite (one writer) reads only."""
    if session.get_bind().dialect.name != "postgresql":
        return True, session.execute(_FIND, {"t": tenant_id, "k": key}).first()
    row = session.execute(
        _LOCK_AND_FIND_PG, {"ns": KEY_LOCK_NAMESPACE, "h": _lock_id(tenant_id, key), "t": tenant_id, "k": key}
    ).one()
    return bool(row.got), (row if row.id is not None else None)


_INSERT_IF_NEW = {
    "postgresql": pg_insert(_keys).on_conflict_do_nothing(index_elements=["tenant_id", "key"]),
    "sqlite": sqlite_insert(_keys).on_conflict_do_nothing(index_elements=["tenant_id", "key"]),
}


def insert_completed(session: Session, values: dict[str, Any]) -> bool:
    """Insert a key with its stored response; False when the key already exists (a concurrent request
    with the same key committed first). Read from RETURNING: an INSERT's rowcount is -1 through SQLAlchemy 2.1
    with psycopg 3, whether it inserted or not."""
    stmt = _INSERT_IF_NEW.get(session.get_bind().dialect.name, insert(_keys))
    return session.execute(stmt.returning(_keys.c.id), values).first() is not None


def delete_by_id(session: Session, record_id: uuid.UUID) -> None:
    session.execute(delete(_keys).where(_keys.c.id == record_id))


def set_response(session: Session, record_id: uuid.UUID, status: int, body: object, headers: dict[str, str]) -> int:
    result = session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.response_status.is_(None))
        .values(response_status=status, response_body=body, response_headers=headers)
    )
    return result.rowcount  # type: ignore[attr-defined, no-any-return]


def delete_expired(session: Session, now: datetime) -> int:
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now))
    return result.rowcount  # type: ignore[attr-defined, no-any-return]
