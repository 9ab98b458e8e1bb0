"""sha256 of files, in one place: artifacts, uploads, report hashes, testbed manifests, model fingerprints."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's content (`hashlib.file_digest`: streamed, never the whole file in memory)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def update_with_file(digest: Any, path: Path) -> None:
    """Stream a file's content into a running digest (a fingerprint over several files)."""
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
