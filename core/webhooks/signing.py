"""Standard Webhooks signatures: HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, base64, `v1,` prefix.

Secrets look like `whsec_<base64 key>`; the HMAC key is the decoded bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    body = secret[len(PREFIX):] if secret.startswith(PREFIX) else secret
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise ValueError("a webhook secret is 'whsec_' followed by base64 (24 to 64 bytes)")


def check_secret(secret: str) -> str:
    key = secret_key(secret)
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret is 'whsec_' followed by base64 (24 to 64 bytes)")
    return secret


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": "Lethe-Webhooks/1",
    }


def verify(secret: str, headers_in: dict[str, str], body: bytes, *, tolerance: int = 300,
           now: int | None = None) -> bool:
    """Receiver side (used by tests and documented for clients)."""
    import time

    msg_id = headers_in["webhook-id"]
    timestamp = int(headers_in["webhook-timestamp"])
    if abs((now if now is not None else int(time.time())) - timestamp) > tolerance:
        return False
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in headers_in["webhook-signature"].split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False
