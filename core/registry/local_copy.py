"""Turn a registered model's source URI into a local folder a worker can load.

file:// is used in place; s3:// is downloaded (every object sha256-checked,
the whole copy capped at LETHE_MODEL_SOURCE_MAX_BYTES) into a cache under {data_dir}/model-cache, reading
only through the owning tenant's `models-in/` view of the store; hf://org/repo@revision only when hub access
is enabled in the settings. Whatever the scheme, a folder holding a link that resolves outside the place it
came from (the model roots, the copy cache, the hub cache) is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlparse

from core.config import Settings
from core.registry.sources import model_roots, models_in_uri
from core.spare.errors import UnsupportedModelError
from core.storage import get_store
from core.storage.base import ObjectTooLarge
from core.storage.tenant import models_in


class ModelSourceError(UnsupportedModelError):
    """The source URI cannot be used (scheme not allowed, outside the tenant's area, nothing there, too big)."""


def local_model_dir(source_uri: str, settings: Settings, *, tenant_id: uuid.UUID) -> Path:
    """The local folder of `source_uri`, registered by `tenant_id` (whose store view s3:// reads go through)."""
    parsed = urlparse(source_uri)
    if parsed.scheme == "file":
        path = Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)
        if not path.is_dir():
            raise ModelSourceError("the model folder does not exist (any more)")
        # A folder registered inside the model roots must resolve (itself, every file, every link) inside them;
        # one outside them (a row an operator wrote) must be self-contained.
        in_roots = _inside(Path(os.path.normpath(path)), model_roots(settings))
        refuse_links_out(path, [Path(r).resolve() for r in settings.model_roots] if in_roots else [path.resolve()])
        return path
    if parsed.scheme == "s3":
        return _from_s3(source_uri, settings, tenant_id)
    if parsed.scheme == "hf":
        if not getattr(settings, "allow_hub", False):
            raise ModelSourceError("hf:// sources are disabled: enable hub access in the settings to use them")
        return _from_hub(parsed.netloc + parsed.path, settings)
    raise ModelSourceError(f"unsupported model source {source_uri!r}: use file://, s3:// or hf://")


def refuse_links_out(model_dir: Path, roots: list[Path]) -> None:
    """Refuse a folder in which any file or folder (followed through links) resolves outside `roots`:
    a weight file linked to /etc/... or to another tenant's files never gets loaded or fingerprinted."""
    seen: set[Path] = set()
    for current, dirs, files in os.walk(model_dir, followlinks=True):
        real = Path(current).resolve()
        if not _inside(real, roots):
            raise ModelSourceError(f"{_rel(current, model_dir)} links to a folder outside the model's location: "
                                   "links out are refused")
        if real in seen:  # a link loop, or two links to one folder: look once
            dirs[:] = []
            continue
        seen.add(real)
        for name in files:
            if not _inside(Path(current, name).resolve(), roots):
                raise ModelSourceError(f"{_rel(os.path.join(current, name), model_dir)} links to a file outside "
                                       "the model's location: links out are refused")


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _rel(path: str, model_dir: Path) -> str:
    """A path relative to the model folder (errors never name the server's own directories)."""
    return os.path.relpath(path, model_dir)


def _from_s3(uri: str, settings: Settings, tenant_id: uuid.UUID) -> Path:
    area = models_in_uri(settings, tenant_id)
    if area is None or not uri.startswith(area) or len(uri) <= len(area):
        raise ModelSourceError("s3:// model sources must be in the owning tenant's models-in/ area of the store")
    view = models_in(get_store(settings), tenant_id)
    folder = uri[len(area):].strip("/")
    cache_root = settings.data_dir / "model-cache"
    cache = cache_root / hashlib.sha256(f"{tenant_id}:{uri}".encode()).hexdigest()[:32]
    if (cache / ".complete").is_file():
        refuse_links_out(cache, [cache_root.resolve()])
        return cache
    try:
        objects = view.list_sizes(folder)
    except ValueError:  # an object name that keys may not have (check_key)
        raise ModelSourceError("the model's s3:// prefix holds an object whose name is not a valid key")
    if not objects:
        raise ModelSourceError("no objects under the model's s3:// prefix")
    limit = settings.model_source_max_bytes
    total = sum(size for _, size in objects)
    if total > limit:
        raise ModelSourceError(f"the model's objects add up to {total} bytes; at most {limit} are copied "
                               "(LETHE_MODEL_SOURCE_MAX_BYTES)")
    staging = cache.with_name(f"{cache.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        left = limit
        for key, _ in objects:
            dest = view.download(key, staging / key[len(folder) + 1:], max_bytes=left)
            left -= dest.stat().st_size
        (staging / ".complete").write_text(uri)
        if cache.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            staging.replace(cache)
    except ObjectTooLarge:
        raise ModelSourceError(f"the model's objects grew past {limit} bytes while being copied "
                               "(LETHE_MODEL_SOURCE_MAX_BYTES)")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return cache


def _from_hub(spec: str, settings: Settings) -> Path:
    repo, _, revision = spec.partition("@")
    from huggingface_hub import snapshot_download

    cache_dir = settings.data_dir / "hub-cache"
    path = Path(snapshot_download(repo_id=repo, revision=revision or None, cache_dir=str(cache_dir)))
    refuse_links_out(path, [cache_dir.resolve()])
    return path
