"""Expiring, HMAC-signed download tokens for stores that have no presigned URLs of their own (file://)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from core.errors import LetheError


class InvalidDownloadToken(LetheError):
    kind = "invalid-download-token"
    title = "Download link invalid or expired"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_download(key: bytes, object_key: str, expires: int) -> str:
    body = f"{expires}:{object_key}".encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def verify_download(key: bytes, token: str, *, now: float | None = None) -> str:
    """Return the object key a token grants, or raise InvalidDownloadToken."""
    try:
        body_b64, mac_b64 = token.split(".", 1)
        body = _unb64(body_b64)
        mac = _unb64(mac_b64)
    except (ValueError, TypeError):
        raise InvalidDownloadToken("the download link is malformed")
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise InvalidDownloadToken("the download link's signature does not match")
    expires_text, _, object_key = body.decode().partition(":")
    if int(expires_text) < (now if now is not None else time.time()):
        raise InvalidDownloadToken("the download link has expired")
    return object_key
