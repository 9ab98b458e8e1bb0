"""The database writer hashes prefix + seq + suffix: that must be canonical_json of the record, bit for bit."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest

from core.audit.chain import GENESIS_HASH, event_hash, record_json_around_seq


@pytest.mark.parametrize("payload", [
    {},
    {"targets": ["Van Gogh", "ü é ✓"], "n": 3, "x": None, "f": 0.5},
    {"nested": {"a": 1, "seq": -7_461_230_958_112_345, "z": [1, {"seq": 2}]}},  # the marker inside a payload
    {"s": ',"seq":-7461230958112345,'},
])
@pytest.mark.parametrize("tenant_id", [None, uuid.UUID("6f1c1f2e-8a43-4f0e-9d4e-2d1b7c5b9a10")])
@pytest.mark.parametrize("seq", [1, 42, 10**12])
def test_parts_around_seq_hash_like_event_hash(payload: dict, tenant_id: uuid.UUID | None, seq: int) -> None:
    at = datetime(2026, 11, 29, 5, 30, 1, 123456, tzinfo=UTC)
    fields = {"at": at, "tenant_id": tenant_id, "actor": "key:x", "action": "erasure.submitted",
              "subject": 'erasure:"seq":1,', "payload": payload}
    prefix, suffix = record_json_around_seq(**fields)
    digest = hashlib.sha256((GENESIS_HASH + prefix + str(seq) + suffix).encode()).hexdigest()
    assert digest == event_hash(prev_hash=GENESIS_HASH, seq=seq, **fields)
