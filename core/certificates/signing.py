"""The Ed25519 key that signs erasure certificates, and signing/verification of canonical JSON.

Key: LETHE_SIGNING_KEY (PEM, or base64 of the 32-byte seed); else generated once and kept, PEM, in
{data_dir}/signing.key (embedded mode).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.audit.chain import canonical_json
from core.config import Settings
from core.keyfiles import read_or_create

ALG = "Ed25519"


def _new_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def parse_private_key(text: str | bytes) -> Ed25519PrivateKey:
    raw = text.encode() if isinstance(text, str) else text
    raw = raw.strip()
    if raw.startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(raw, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the signing key is not an Ed25519 key")
        return key
    seed = base64.b64decode(raw, validate=True)
    if len(seed) != 32:
        raise ValueError("a base64 signing key must decode to the 32-byte Ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(seed)


@lru_cache(maxsize=8)
def _file_key(path: Path) -> Ed25519PrivateKey:
    return parse_private_key(read_or_create(path, _new_pem))


def existing_private_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The configured or already generated signing key; None where there is none (nothing is created)."""
    if settings.signing_key is not None and settings.signing_key.get_secret_value():
        return parse_private_key(settings.signing_key.get_secret_value())
    path = settings.data_dir / "signing.key"
    return _file_key(path) if path.is_file() else None


def private_key(settings: Settings) -> Ed25519PrivateKey:
    if settings.signing_key is not None and settings.signing_key.get_secret_value():
        return parse_private_key(settings.signing_key.get_secret_value())
    return _file_key(settings.data_dir / "signing.key")


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_raw(key)).hexdigest()[:16]


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(text: str | bytes) -> Ed25519PublicKey:
    """A public key from PEM (SubjectPublicKeyInfo) or base64 raw bytes — or a private key's public half."""
    raw = text.encode() if isinstance(text, str) else text
    raw = raw.strip()
    if b"PRIVATE KEY" in raw:
        return parse_private_key(raw).public_key()
    if raw.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(raw)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(raw, validate=True))


def sign(key: Ed25519PrivateKey, body: Any) -> dict[str, str]:
    public = key.public_key()
    return {
        "alg": ALG,
        "key_id": key_id(public),
        "public_key": base64.b64encode(public_raw(public)).decode(),
        "value": base64.b64encode(key.sign(canonical_json(body).encode())).decode(),
    }


def verify(public: Ed25519PublicKey, body: Any, signature_b64: str) -> bool:
    try:
        public.verify(base64.b64decode(signature_b64, validate=True), canonical_json(body).encode())
        return True
    except (InvalidSignature, ValueError):
        return False
