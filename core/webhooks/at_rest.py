"""Webhook signing secrets encrypted at rest.

The service must sign every delivery with the secret itself, so it cannot keep only a hash. The
`webhook_endpoints.secret` column therefore holds `v1:` + base64url(nonce ‖ AES-256-GCM(secret)), under a key
derived (HKDF-SHA256) from the server secret (LETHE_SECRET_KEY, else {data_dir}/secret.key — the key that
already protects API keys). A copy of the database alone (a backup, a leaked lethe.db) does not yield the
secrets; the ORM type below encrypts on write and decrypts on read, so callers handle plain `whsec_...`.
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from core.config import Settings, get_settings

PREFIX = "v1:"
_AAD = b"lethe webhook secret"
_NONCE = 12


class SecretUnreadable(RuntimeError):
    """A stored secret does not decrypt with this server's key (the server secret changed)."""


@lru_cache(maxsize=8)
def _aead(server_secret: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"lethe-webhook-secrets").derive(server_secret)
    return AESGCM(key)


def _box(settings: Settings | None = None) -> AESGCM:
    from core.tenancy.keys import secret_key

    return _aead(secret_key(settings or get_settings()))


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def seal(secret: str, settings: Settings | None = None) -> str:
    nonce = os.urandom(_NONCE)
    sealed = _box(settings).encrypt(nonce, secret.encode(), _AAD)
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()


def unseal(stored: str, settings: Settings | None = None) -> str:
    """The plain secret; a value written before encryption at rest (no `v1:` prefix) is returned as is."""
    if not is_sealed(stored):
        return stored
    body = stored[len(PREFIX):]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    try:
        return _box(settings).decrypt(raw[:_NONCE], raw[_NONCE:], _AAD).decode()
    except InvalidTag:
        raise SecretUnreadable("a webhook secret does not decrypt with this server's secret key "
                               "(LETHE_SECRET_KEY / secret.key changed); re-create the webhook") from None


class EncryptedSecret(TypeDecorator[str]):
    """A string column stored sealed (see module doc); 200 characters hold a sealed 94-character secret."""

    impl = String(200)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or is_sealed(value):
            return value
        return seal(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else unseal(value)
