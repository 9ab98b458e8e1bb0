"""Signed checkpoints of the audit chain's head.

A checkpoint is a detached JWS (EdDSA, the key that signs certificates) over
`{"kind": "lethe.audit.checkpoint", "seq": N, "hash": H, "at": T}`: event N, with hash H, was the head of the
chain at time T. Each is kept twice: as a row of `audit_checkpoints` and, outside the database, as the object
`audit/head.json` of the object store (the newest one). Someone who deletes the newest events must then also
delete the checkpoints in both places, and cannot forge a replacement without the signing key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from core.audit.chain import format_time
from core.config import Settings
from core.logging import get_logger
from core.storage import get_store
from core.storage.base import ObjectNotFound

log = get_logger(__name__)

KIND = "lethe.audit.checkpoint"
HEAD_OBJECT = "audit/head.json"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: datetime
    key_id: str
    signature: str

    def body(self) -> dict[str, object]:
        return {"kind": KIND, "seq": self.seq, "hash": self.hash, "at": format_time(self.at)}

    def as_json(self) -> dict[str, object]:
        return {**self.body(), "key_id": self.key_id, "signature": self.signature}


def sign(settings: Settings, seq: int, head_hash: str, at: datetime) -> Checkpoint:
    from core import signing

    key = signing.private_key(settings)
    unsigned = Checkpoint(seq, head_hash, at, "", "")
    # The certificates' signature format: a detached JWS (EdDSA) over the RFC 8785 form of the body.
    jws = signing.sign_detached(key, unsigned.body())
    return Checkpoint(seq, head_hash, at, signing.key_id(key.public_key()), jws)


def is_authentic(settings: Settings, checkpoint: Checkpoint) -> bool:
    """Signed by this service's key (a checkpoint signed by any other key, or altered, is not)."""
    from core import signing

    public = signing.private_key(settings).public_key()
    return checkpoint.key_id == signing.key_id(public) and signing.verify_detached(public, checkpoint.signature,
                                                                                    checkpoint.body())


def read_external_head(settings: Settings) -> Checkpoint | None:
    """The newest checkpoint kept in the object store; None when there is none yet. A malformed object is
    returned as a checkpoint that cannot verify (so it is reported, not ignored)."""
    try:
        raw = get_store(settings).get(HEAD_OBJECT)
    except (ObjectNotFound, FileNotFoundError):
        return None
    try:
        data = json.loads(raw)
        at = datetime.fromisoformat(str(data["at"]))
        return Checkpoint(int(data["seq"]), str(data["hash"]), at, str(data["key_id"]), str(data["signature"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return Checkpoint(0, "", datetime.fromtimestamp(0, UTC), "", "")


def write_external_head(settings: Settings, checkpoint: Checkpoint) -> None:
    get_store(settings).put(HEAD_OBJECT, json.dumps(checkpoint.as_json(), sort_keys=True).encode(),
                            content_type="application/json")
