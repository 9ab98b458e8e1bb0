"""Canonical encoding and hashing of audit events (pure functions, shared by writer and verifier)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from core.canonical import canonical_json
from core.timeutil import as_utc

GENESIS_HASH = "0" * 64


def format_time(at: datetime) -> str:
    return as_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SEQ_MARK = -7_461_230_958_112_345


def record_json_around_seq(
    *, at: datetime, tenant_id: uuid.UUID | None, actor: str, action: str, subject: str, payload: dict[str, Any],
) -> tuple[str, str]:
    """The canonical JSON of an event record split around its `seq` value: prefix + str(seq) + suffix is
    exactly canonical_json(record). Lets the database writer (which alone knows seq) hash the record."""
    text = canonical_json(_record(_SEQ_MARK, at, tenant_id, actor, action, subject, payload))
    # Keys are sorted: "seq" follows "payload" at the top level; the last occurrence is the top-level one
    # (subject and tenant are JSON strings, which cannot hold it unescaped).
    prefix, mark, suffix = text.rpartition(f',"seq":{_SEQ_MARK},')
    if not mark:
        raise ValueError("record did not serialize as expected")
    return prefix + ',"seq":', "," + suffix


def _record(
    seq: int, at: datetime, tenant_id: uuid.UUID | None, actor: str, action: str, subject: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": format_time(at),
        "tenant": str(tenant_id) if tenant_id else None,
        "actor": actor,
        "action": action,
        "subject": subject,
        "payload": payload,
    }


def event_hash(
    *,
    prev_hash: str,
    seq: int,
    at: datetime,
    tenant_id: uuid.UUID | None,
    actor: str,
    action: str,
    subject: str,
    payload: dict[str, Any],
) -> str:
    record = _record(seq, at, tenant_id, actor, action, subject, payload)
    return hashlib.sha256((prev_hash + canonical_json(record)).encode()).hexdigest()
