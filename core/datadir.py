"""The data directory holds the embedded database, keys and objects: only the service's user may read it.

Directories Lethe creates there are 0700 and the SQLite database file 0600 (SQLite gives its -wal/-shm files
the database file's mode), whatever the umask. An existing data directory owned by the service's user is
tightened to 0700 when a process starts; files and directories owned by someone else are left alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from core.config import Settings


def private_dirs(path: Path) -> Path:
    """Create `path` and any missing parents, each new directory with mode 0700."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # a concurrent process made it
            continue
        os.chmod(folder, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 if missing; narrow an existing one we own to 0600."""
    private_dirs(Path(path).parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _tighten(Path(path), 0o600)
    return Path(path)


def _tighten(path: Path, mode: int) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & ~mode:
        with contextlib.suppress(PermissionError):  # a read-only mount: nothing to narrow there
            os.chmod(path, stat.S_IMODE(info.st_mode) & mode)


def secure_data_dir(settings: Settings) -> Path:
    """Create the data dir 0700 (or narrow ours to 0700) and the embedded SQLite database file 0600."""
    private_dirs(settings.data_dir)
    _tighten(settings.data_dir, 0o700)
    db = sqlite_path(settings.database_url)
    if db is not None:
        private_file(db)
    return settings.data_dir


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite:/// URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" and "///" in url else None
