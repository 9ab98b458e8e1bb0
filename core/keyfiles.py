"""Secrets that embedded mode generates once and keeps in the data dir (HMAC key, signing key).

Creation is race-safe: several processes starting at once (uvicorn workers, a CLI command) agree on one
file — the first `O_EXCL` create wins and everyone else reads what it wrote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from core.datadir import private_dirs


def read_or_create(path: Path, generate: Callable[[], bytes]) -> bytes:
    """Content of `path`; if it does not exist, write `generate()` there (mode 0600) first."""
    private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process may be between create and write: wait briefly for content.
        for _ in range(50):
            data = path.read_bytes()
            if data:
                return data
            time.sleep(0.02)
        raise RuntimeError(f"{path} exists but is empty; delete it to generate a new one") from None
    data = generate()
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return data
