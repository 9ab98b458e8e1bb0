"""Where a registered model's weights may come from, checked before anything is queued.

- `file:///abs/path` only inside LETHE_MODEL_ROOTS, after resolving symlinks and `..` (a link that points
  out of a root is refused);
- `s3://bucket/prefix` only in the configured object store's bucket;
- `hf://org/repo@revision` only when LETHE_ALLOW_HUB is on, and only pinned to a revision.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from core.config import Settings
from core.errors import ValidationFailed

_HF = re.compile(r"^hf://([A-Za-z0-9][A-Za-z0-9._-]{0,95})/([A-Za-z0-9][A-Za-z0-9._-]{0,95})@([A-Za-z0-9._/-]{1,100})$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _invalid(detail: str) -> ValidationFailed:
    return ValidationFailed(detail, field="source_uri")


def validate_source_uri(uri: str, settings: Settings) -> str:
    """The normalized source URI, or ValidationFailed (422) saying why it is not acceptable."""
    uri = uri.strip()
    if any(ord(c) < 32 for c in uri):
        raise _invalid("the source URI contains control characters")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "file":
        return _file(uri, settings)
    if scheme == "s3":
        return _s3(uri, settings)
    if scheme == "hf":
        return _hf(uri, settings)
    raise _invalid("source_uri must be file://, s3:// or hf:// (e.g. file:///models/sd15)")


def _file(uri: str, settings: Settings) -> str:
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost") or parsed.query or parsed.fragment:
        raise _invalid("a file:// source is file:///absolute/path (no host, query or fragment)")
    raw = unquote(parsed.path)
    if not raw.startswith("/"):
        raise _invalid("a file:// source needs an absolute path")
    try:
        resolved = Path(raw).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise _invalid(f"{raw} does not exist")
    except (OSError, RuntimeError) as exc:  # symlink loops, permission errors
        raise _invalid(f"{raw} cannot be resolved: {type(exc).__name__}")
    roots = [Path(r).resolve() for r in settings.model_roots]
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise _invalid(
            f"{raw} resolves outside the allowed model roots (LETHE_MODEL_ROOTS: {', '.join(map(str, roots))})"
        )
    return f"file://{resolved.as_posix()}"


def _s3(uri: str, settings: Settings) -> str:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not _BUCKET.match(bucket) or parsed.query or parsed.fragment:
        raise _invalid("an s3:// source is s3://bucket/prefix")
    if not key:
        raise _invalid("an s3:// source needs a prefix inside the bucket (s3://bucket/models/sd15)")
    parts = PurePosixPath(key).parts
    if any(p in ("..", ".") for p in parts) or "//" in key:
        raise _invalid("an s3:// prefix may not contain '.', '..' or empty segments")
    store = urlparse(settings.store_url)
    if store.scheme != "s3" or store.netloc != bucket:
        configured = store.netloc if store.scheme == "s3" else "none (the store is local)"
        raise _invalid(f"s3:// sources must be in the configured store's bucket ({configured})")
    return f"s3://{bucket}/{key.rstrip('/')}"


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
