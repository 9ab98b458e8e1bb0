"""Object storage for uploads and job artifacts: `get_store()` picks file:// or s3:// from LETHE_STORE_URL."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

from core.config import Settings, get_settings
from core.storage.base import (
    IntegrityError,
    ObjectNotFound,
    ObjectStore,
    StoredObject,
    StoreUnavailable,
    artifact_key,
    attempt_prefix,
    check_key,
)

__all__ = [
    "IntegrityError",
    "ObjectNotFound",
    "ObjectStore",
    "StoreUnavailable",
    "StoredObject",
    "artifact_key",
    "attempt_prefix",
    "check_key",
    "download_signing_key",
    "get_store",
    "make_store",
]

_STORES: dict[tuple[str, str | None, str], ObjectStore] = {}


def download_signing_key(settings: Settings | None = None) -> bytes:
    """Key for file:// download tokens: derived from LETHE_SECRET_KEY, else kept in {data_dir}/download.key."""
    settings = settings or get_settings()
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return hashlib.sha256(b"lethe-download:" + settings.secret_key.get_secret_value().encode()).digest()
    path = settings.data_dir / "download.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".download.key.{os.getpid()}")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # first writer wins; concurrent processes then read the same key
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def make_store(url: str, settings: Settings | None = None) -> ObjectStore:
    """Build a store for a `file://DIR` or `s3://BUCKET[/prefix]` URL."""
    settings = settings or get_settings()
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from core.storage.local import FileStore

        root = Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)
        return FileStore(root, signing_key=download_signing_key(settings))
    if parsed.scheme == "s3":
        from core.storage.s3 import S3Store

        return S3Store(
            parsed.netloc,
            parsed.path,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            multipart_threshold=settings.s3_multipart_threshold_mb * 1024 * 1024,
            multipart_chunksize=settings.s3_multipart_chunk_mb * 1024 * 1024,
        )
    raise ValueError(f"unsupported object store URL {url!r}: use file://DIR or s3://BUCKET[/prefix]")


def get_store(settings: Settings | None = None) -> ObjectStore:
    """The configured store, one instance per (URL, endpoint) in this process."""
    settings = settings or get_settings()
    cache_key = (settings.store_url, settings.s3_endpoint_url, settings.s3_public_endpoint_url, str(settings.data_dir))
    if cache_key not in _STORES:
        _STORES[cache_key] = make_store(settings.store_url, settings)
    return _STORES[cache_key]
