"""Expiring, opaque download tokens for stores that have no presigned URLs of their own (file://).

A token is `v2.` + base64url(nonce ‖ AES-256-GCM(`{expires}:{object key}`)), keyed from the download
signing key. The authenticated encryption makes it unforgeable (any altered byte fails the tag) and opaque:
it reveals neither the object key (tenant id, request, job) nor the expiry to whoever sees the URL.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import LetheError

VERSION = "v2"
_NONCE = 12


class InvalidDownloadToken(LetheError):
    kind = "invalid-download-token"
    title = "Download link invalid or expired"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aead(key: bytes) -> AESGCM:
    return AESGCM(hashlib.sha256(b"lethe-download-token:" + key).digest())


def sign_download(key: bytes, object_key: str, expires: int) -> str:
    nonce = os.urandom(_NONCE)
    sealed = _aead(key).encrypt(nonce, f"{int(expires)}:{object_key}".encode(), VERSION.encode())
    return f"{VERSION}.{_b64(nonce + sealed)}"


def verify_download(key: bytes, token: str, *, now: float | None = None) -> str:
    """Return the object key a token grants, or raise InvalidDownloadToken."""
    version, _, body = token.partition(".")
    try:
        raw = _unb64(body)
    except (ValueError, TypeError):
        raise InvalidDownloadToken("the download link is malformed")
    if version != VERSION or len(raw) <= _NONCE + 16:
        raise InvalidDownloadToken("the download link is malformed")
    try:
        plain = _aead(key).decrypt(raw[:_NONCE], raw[_NONCE:], VERSION.encode()).decode()
    except (InvalidTag, UnicodeDecodeError):
        raise InvalidDownloadToken("the download link's signature does not match")
    expires_text, _, object_key = plain.partition(":")
    if int(expires_text) < (now if now is not None else time.time()):
        raise InvalidDownloadToken("the download link has expired")
    return object_key
