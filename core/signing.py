"""The Ed25519 key that signs erasure certificates, and detached JWS signatures made with it.

Key: LETHE_SIGNING_KEY (PEM, or base64 of the 32-byte seed); else generated once and kept, PEM, in
{data_dir}/signing.key (embedded mode).

Signature: a JWS (RFC 7515) in compact serialization with a detached payload (RFC 7515 Appendix F):
`BASE64URL(header) + ".." + BASE64URL(signature)`. The header is `{"alg":"EdDSA","kid":<key id>}` (EdDSA with
Ed25519, RFC 8037); the payload, left out of the JWS and carried beside it, is the RFC 8785 canonical JSON
of the signed value. So the JWS signing input is `BASE64URL(header) + "." + BASE64URL(JCS(value))`, and any
JOSE library — or `openssl pkeyutl -verify -rawin` over that input — checks it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.canonical import canonical_json, canonicalize
from core.config import Settings
from core.keyfiles import read_or_create

ALG = "EdDSA"  # the JWS algorithm (RFC 8037); the curve is Ed25519
LEGACY_ALG = "Ed25519"  # version-1 certificates: a bare signature over Python's sorted-key json.dumps


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


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url (unpadded)")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as a JWK (RFC 8037 OKP), with its key id."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_raw(key)), "kid": key_id(key), "alg": ALG}


def signing_input(protected: str, payload: bytes) -> bytes:
    """What the JWS signature covers: ASCII(BASE64URL(header) || '.' || BASE64URL(payload))."""
    return f"{protected}.{b64url(payload)}".encode("ascii")


def sign_detached(key: Ed25519PrivateKey, value: Any) -> str:
    """A compact JWS over the canonical JSON of `value`, payload detached: `header..signature`."""
    protected = b64url(canonicalize({"alg": ALG, "kid": key_id(key.public_key())}))
    return f"{protected}..{b64url(key.sign(signing_input(protected, canonicalize(value))))}"


def jws_header(jws: str) -> dict[str, Any]:
    """The protected header of a detached compact JWS (ValueError if it is not one)."""
    parts = jws.split(".") if isinstance(jws, str) else []
    if len(parts) != 3 or parts[1] != "":
        raise ValueError("not a compact JWS with a detached payload (header..signature)")
    header = json.loads(b64url_decode(parts[0]))
    if not isinstance(header, dict):
        raise ValueError("the JWS header is not a JSON object")
    return header


def verify_detached(public: Ed25519PublicKey, jws: str, value: Any) -> bool:
    """True when `jws` (header..signature) signs the canonical JSON of `value` with `public`."""
    try:
        header = jws_header(jws)
        if header.get("alg") != ALG or header.get("b64", True) is not True or "crit" in header:
            return False
        protected, _, signature = jws.split(".")
        public.verify(b64url_decode(signature), signing_input(protected, canonicalize(value)))
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_legacy(public: Ed25519PublicKey, body: Any, signature_b64: str) -> bool:
    """Version-1 certificates: Ed25519 over Python's `json.dumps(sort_keys=True, separators=(",", ":"))`."""
    try:
        public.verify(base64.b64decode(signature_b64, validate=True), canonical_json(body).encode())
        return True
    except (InvalidSignature, ValueError):
        return False
