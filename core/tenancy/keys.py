"""API key format and keyed hashing.

A key reads `lth_<random>_<checksum>`: `random` is 32 base62 characters (~190 bits), `checksum` is
6 base62 characters of CRC32 over `lth_<random>`, so typos and truncated keys are rejected without a
database lookup (and secret scanners can recognise real keys). The first 10 characters of `random`
form the public prefix used to find the row; only HMAC-SHA256(secret_key, key) is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
import zlib
from functools import lru_cache
from pathlib import Path

from core.config import Settings
from core.keyfiles import read_or_create

ALPHABET = string.digits + string.ascii_letters
RANDOM_LEN = 32
PREFIX_LEN = 10
CHECKSUM_LEN = 6
KEY_RE = re.compile(rf"^lth_([0-9A-Za-z]{{{RANDOM_LEN}}})_([0-9A-Za-z]{{{CHECKSUM_LEN}}})$")


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LEN)


def generate_key() -> str:
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LEN))
    body = f"lth_{random_part}"
    return f"{body}_{_checksum(body)}"


def parse_key(key: str) -> str | None:
    """The lookup prefix of a well-formed key with a valid checksum, else None."""
    match = KEY_RE.match(key)
    if not match:
        return None
    random_part, checksum = match.groups()
    if not hmac.compare_digest(_checksum(f"lth_{random_part}"), checksum):
        return None
    return key_prefix(key)


def key_prefix(key: str) -> str:
    return key[: 4 + PREFIX_LEN]


@lru_cache(maxsize=8)
def _file_secret(path: Path) -> bytes:
    return base64.b64decode(read_or_create(path, lambda: base64.b64encode(secrets.token_bytes(32))).strip())


def secret_key(settings: Settings) -> bytes:
    """LETHE_SECRET_KEY, else a random key generated once and kept in {data_dir}/secret.key."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value().encode()
    return _file_secret(settings.data_dir / "secret.key")


def hash_key(key: str, secret: bytes) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()
