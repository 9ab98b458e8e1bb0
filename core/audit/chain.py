"""Canonical encoding and hashing of audit events (pure functions, shared by writer and verifier)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from core.timeutil import as_utc

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def format_time(at: datetime) -> str:
    return as_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    record = {
        "seq": seq,
        "at": format_time(at),
        "tenant": str(tenant_id) if tenant_id else None,
        "actor": actor,
        "action": action,
        "subject": subject,
        "payload": payload,
    }
    return hashlib.sha256((prev_hash + canonical_json(record)).encode()).hexdigest()
