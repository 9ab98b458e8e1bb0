"""Turn a registered model's source URI into a local folder a worker can load.

file:// is used in place; s3://bucket/prefix is downloaded (every object sha256-checked) into a cache
under {data_dir}/model-cache; hf://org/repo@revision only when hub access is enabled in the settings.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlparse

from core.config import Settings
from core.spare.errors import UnsupportedModelError
from core.storage import get_store
from core.storage.base import ObjectStore


class ModelSourceError(UnsupportedModelError):
    """The source URI cannot be used (scheme not allowed, nothing under the prefix)."""


def local_model_dir(source_uri: str, settings: Settings) -> Path:
    parsed = urlparse(source_uri)
    if parsed.scheme == "file":
        path = Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)
        if not path.is_dir():
            raise ModelSourceError(f"model folder {path} does not exist")
        return path
    if parsed.scheme == "s3":
        return _from_s3(parsed.netloc, parsed.path.strip("/"), source_uri, settings)
    if parsed.scheme == "hf":
        if not getattr(settings, "allow_hub", False):
            raise ModelSourceError("hf:// sources are disabled: enable hub access in the settings to use them")
        return _from_hub(parsed.netloc + parsed.path, settings)
    raise ModelSourceError(f"unsupported model source {source_uri!r}: use file://, s3:// or hf://")


def _store_for_bucket(bucket: str, settings: Settings) -> tuple[ObjectStore, str]:
    """The configured store when the URI points into it (keys relative to its prefix), else the bare bucket."""
    store = get_store(settings)
    from core.storage.s3 import S3Store

    if isinstance(store, S3Store) and store.bucket == bucket:
        return store, store.prefix
    return (
        S3Store(bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                multipart_threshold=settings.s3_multipart_threshold_mb << 20,
                multipart_chunksize=settings.s3_multipart_chunk_mb << 20),
        "",
    )


def _from_s3(bucket: str, prefix: str, uri: str, settings: Settings) -> Path:
    store, store_prefix = _store_for_bucket(bucket, settings)
    if store_prefix:
        if not (prefix + "/").startswith(store_prefix + "/"):
            raise ModelSourceError(f"{uri} is outside the configured store's prefix {store_prefix!r}")
        prefix = prefix[len(store_prefix):].strip("/")
    cache = settings.data_dir / "model-cache" / hashlib.sha256(uri.encode()).hexdigest()[:32]
    if (cache / ".complete").is_file():
        return cache
    keys = store.list(prefix + "/")
    if not keys:
        raise ModelSourceError(f"no objects under {uri}")
    staging = cache.with_name(f"{cache.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        for key in keys:
            store.download(key, staging / key[len(prefix) + 1:])
        (staging / ".complete").write_text(uri)
        if cache.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            staging.replace(cache)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return cache


def _from_hub(spec: str, settings: Settings) -> Path:
    repo, _, revision = spec.partition("@")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=repo, revision=revision or None,
                                  cache_dir=str(settings.data_dir / "hub-cache")))
