"""Where a registered model's weights may come from, checked before anything is queued.

- `file:///abs/path` only inside LETHE_MODEL_ROOTS, after resolving symlinks and `..` (a link that points
  out of a root is refused). Containment is checked before the file system is asked whether the path
  exists, and no error names a path or a root: the answers are no oracle for files outside the roots.
- `s3://bucket/prefix` only in the registering tenant's own model area of the configured store,
  `[store prefix/]tenants/{tenant_id}/models-in/...`: never another tenant's objects, nor the service's own
  data (uploads, job artifacts, fused outputs). Workers read the copy through that tenant's view of the
  store (core.registry.local_copy), so the rule holds again where the bytes are read.
- `hf://org/repo@revision` only when LETHE_ALLOW_HUB is on, and only pinned to a revision.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from core.config import Settings
from core.errors import ValidationFailed
from core.storage.base import check_key
from core.storage.tenant import MODELS_IN, TENANTS

_HF = re.compile(r"^hf://([A-Za-z0-9][A-Za-z0-9._-]{0,95})/([A-Za-z0-9][A-Za-z0-9._-]{0,95})@([A-Za-z0-9._/-]{1,100})$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

OUTSIDE_ROOTS = "the source path is not inside an allowed model root (LETHE_MODEL_ROOTS)"
NO_FOLDER = "there is no model folder at this path inside the model roots"


def _invalid(detail: str) -> ValidationFailed:
    return ValidationFailed(detail, field="source_uri")


def validate_source_uri(uri: str, settings: Settings, *, tenant_id: uuid.UUID | None) -> str:
    """The normalized source URI, or ValidationFailed (422) saying why it is not acceptable.

    `tenant_id`: the registering tenant (s3:// sources must lie in its model area; None refuses them)."""
    uri = uri.strip()
    if any(ord(c) < 32 for c in uri):
        raise _invalid("the source URI contains control characters")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "file":
        return _file(uri, settings)
    if scheme == "s3":
        return _s3(uri, settings, tenant_id)
    if scheme == "hf":
        return _hf(uri, settings)
    raise _invalid("source_uri must be file://, s3:// or hf:// (e.g. file:///models/sd15)")


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def model_roots(settings: Settings) -> list[Path]:
    """The configured roots, each as written (normalized) and with its symlinks resolved."""
    roots: list[Path] = []
    for root in settings.model_roots:
        for form in (Path(os.path.normpath(Path(root).absolute())), Path(root).resolve()):
            if form not in roots:
                roots.append(form)
    return roots


def _file(uri: str, settings: Settings) -> str:
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost") or parsed.query or parsed.fragment:
        raise _invalid("a file:// source is file:///absolute/path (no host, query or fragment)")
    raw = unquote(parsed.path)
    if not raw.startswith("/") or "\0" in raw:
        raise _invalid("a file:// source needs an absolute path")
    roots = model_roots(settings)
    # Containment first, on the path as written: nothing outside the roots is ever looked up.
    if not _inside(Path(os.path.normpath(raw)), roots):
        raise _invalid(OUTSIDE_ROOTS)
    try:
        resolved = Path(raw).resolve(strict=False)  # follows the links that exist (a link out is caught next)
    except (OSError, RuntimeError):  # symlink loops, permission errors
        raise _invalid("the source path cannot be resolved (a symlink loop or an unreadable folder)")
    if not _inside(resolved, [Path(r).resolve() for r in settings.model_roots]):
        raise _invalid(OUTSIDE_ROOTS)
    if not resolved.is_dir():
        raise _invalid(NO_FOLDER)
    return f"file://{resolved.as_posix()}"


def models_in_uri(settings: Settings, tenant_id: uuid.UUID) -> str | None:
    """`s3://bucket/[prefix/]tenants/{tenant_id}/models-in/`: where the tenant's s3:// sources must be."""
    store = urlparse(settings.store_url)
    if store.scheme != "s3":
        return None
    prefix = store.path.strip("/")
    return f"s3://{store.netloc}/{prefix + '/' if prefix else ''}{TENANTS}/{tenant_id}/{MODELS_IN}/"


def _s3(uri: str, settings: Settings, tenant_id: uuid.UUID | None) -> str:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not _BUCKET.match(bucket) or parsed.query or parsed.fragment:
        raise _invalid("an s3:// source is s3://bucket/prefix")
    parts = PurePosixPath(key).parts
    if any(p in ("..", ".") for p in parts) or "//" in key:
        raise _invalid("an s3:// prefix may not contain '.', '..' or empty segments")
    area = models_in_uri(settings, tenant_id) if tenant_id is not None else None
    if area is None:
        raise _invalid("s3:// sources need an s3:// object store (this server's store is local)")
    normalized = f"s3://{bucket}/{key.rstrip('/')}"
    if not normalized.startswith(area) or len(normalized) == len(area):
        raise _invalid(f"s3:// sources must be a folder in your tenant's model area {area} "
                       "(other prefixes of the store hold uploads, artifacts and other tenants' data)")
    try:
        check_key(normalized[len(area):])
    except ValueError:
        raise _invalid("the s3:// prefix uses characters that object keys may not hold")
    return normalized


def _hf(uri: str, settings: Settings) -> str:
    if not settings.allow_hub:
        raise _invalid("hf:// sources are disabled on this server (LETHE_ALLOW_HUB=false)")
    match = _HF.match(uri)
    if not match:
        raise _invalid("an hf:// source is hf://org/repo@revision (pin a revision: a commit, tag or branch)")
    org, repo, revision = match.groups()
    if ".." in revision or revision.startswith("/") or revision.endswith("/"):
        raise _invalid("the hf:// revision is not valid")
    return f"hf://{org}/{repo}@{revision}"
