"""Cursor pagination: opaque, URL-safe cursors over a keyset (stable while rows are inserted)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from core.errors import ValidationFailed
from core.timeutil import bounded_utc

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


def encode_cursor(values: dict[str, Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), sort_keys=True, default=str).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValidationFailed("the cursor is not one this API issued", field="cursor")
    if not isinstance(value, dict):
        raise ValidationFailed("the cursor is not one this API issued", field="cursor")
    return value


MAX_SEQ = 2**63 - 1  # a BIGINT


def decode_seq_cursor(cursor: str) -> int:
    """The sequence number of a `{"s": seq}` cursor: a JSON integer (not a boolean) within BIGINT range."""
    value = decode_cursor(cursor).get("s")
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise ValidationFailed("the cursor is not one this API issued", field="cursor")
    return value


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T] = Field(description="This page's items.")
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


def keyset_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """Cursor for lists ordered newest first by (created_at, id)."""
    return encode_cursor({"t": created_at.isoformat(), "i": str(row_id)})


def parse_keyset(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    values = decode_cursor(cursor)
    try:
        created = datetime.fromisoformat(values["t"])
        if created.tzinfo is None:
            raise ValueError("naive")
        return bounded_utc(created), uuid.UUID(values["i"])
    except (KeyError, ValueError, TypeError, AttributeError):
        raise ValidationFailed("the cursor is not one this API issued", field="cursor")
