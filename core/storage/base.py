"""The object-store interface shared by the file:// and s3:// implementations.

Every object carries the sha256 recorded when it was written; reads verify it, so a corrupted or swapped
object is an error, never a silently wrong artifact.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.errors import LetheError, Unavailable
from core.filehash import file_sha256

CHUNK = 1024 * 1024
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._\-/=+@]+$")


class StoreUnavailable(Unavailable):
    """The object store could not be reached (transient: the caller may retry)."""

    kind = "store-unavailable"
    title = "Object store unavailable"


class ObjectNotFound(LetheError):
    kind = "object-not-found"
    title = "Object not found"


class ObjectTooLarge(LetheError):
    """A copy was stopped because it grew past the size allowed for it."""

    kind = "object-too-large"
    title = "Object too large"


class IntegrityError(LetheError):
    """An object's content does not match the sha256 recorded for it."""

    kind = "integrity"
    title = "Object integrity check failed"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


def artifact_key(tenant_id: uuid.UUID | str, request_id: uuid.UUID | str | None, job_id: uuid.UUID | str,
                 attempt: int, name: str) -> str:
    """Deterministic key of one job output: a retried attempt never overwrites another attempt's files."""
    request = str(request_id) if request_id is not None else "none"
    return check_key(f"tenants/{tenant_id}/requests/{request}/jobs/{job_id}/attempt-{attempt}/{name}")


def attempt_prefix(tenant_id: uuid.UUID | str, request_id: uuid.UUID | str | None, job_id: uuid.UUID | str,
                   attempt: int) -> str:
    request = str(request_id) if request_id is not None else "none"
    return f"tenants/{tenant_id}/requests/{request}/jobs/{job_id}/attempt-{attempt}/"


def check_key(key: str) -> str:
    """Refuse keys that could escape the store's root or that S3 and file systems treat differently."""
    parts = key.split("/")
    if (not key or key.startswith("/") or not _SAFE_KEY.match(key) or any(p in ("", ".", "..") for p in parts)
            or len(key) > 900):
        raise ValueError(f"invalid object key {key!r}")
    return key


class HashingReader:
    """Wraps a binary stream; hashes what is read and checks the digest once the stream is exhausted."""

    def __init__(self, raw: BinaryIO, expected_sha256: str | None, key: str) -> None:
        self._raw = raw
        self._expected = expected_sha256
        self._key = key
        self._digest = hashlib.sha256()
        self._done = False

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size) if size is not None and size >= 0 else self._raw.read()
        if data:
            self._digest.update(data)
        if not data or size is None or size < 0:
            self._finish()
        return data

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        actual = self._digest.hexdigest()
        if self._expected is not None and actual != self._expected:
            raise IntegrityError(
                f"object {self._key!r} is corrupt: sha256 {actual} does not match the recorded {self._expected}",
                key=self._key,
            )

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> HashingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def spooled(source: BinaryIO | bytes | Path) -> Iterator[tuple[BinaryIO, int, str]]:
    """Yield (seekable stream at 0, size, sha256) for any source, spooling a plain stream to a temp file."""
    if isinstance(source, bytes):
        import io

        yield io.BytesIO(source), len(source), hashlib.sha256(source).hexdigest()
        return
    if isinstance(source, Path):
        digest, size = file_sha256(source), source.stat().st_size
        with source.open("rb") as fh:
            yield fh, size, digest
        return
    digest = hashlib.sha256()
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=8 * CHUNK) as tmp:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            tmp.write(chunk)
        tmp.seek(0)
        yield tmp, size, digest.hexdigest()  # type: ignore[misc]


class ObjectStore(ABC):
    """put / open / get / exists / delete / presign_get / ping over one bucket or directory."""

    url: str

    @abstractmethod
    def put(self, key: str, source: BinaryIO | bytes | Path, *, content_type: str | None = None) -> StoredObject:
        """Store `source` under `key`; returns its size and sha256 (also recorded with the object)."""

    @abstractmethod
    def recorded_sha256(self, key: str) -> str | None:
        """The sha256 recorded when the object was written (None if none was recorded)."""

    @abstractmethod
    def _open_raw(self, key: str) -> BinaryIO: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; deleting a missing object is not an error."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""

    @abstractmethod
    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size in bytes) of the objects under `prefix`, sorted by key."""

    @abstractmethod
    def presign_get(self, key: str, ttl: int = 3600) -> str:
        """A URL that lets anyone holding it download the object for `ttl` seconds."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    def open(self, key: str, *, expected_sha256: str | None = None) -> HashingReader:
        """A stream of the object; reading it to the end raises IntegrityError on a sha256 mismatch."""
        check_key(key)
        expected = expected_sha256 or self.recorded_sha256(key)
        return HashingReader(self._open_raw(key), expected, key)

    def get(self, key: str, *, expected_sha256: str | None = None) -> bytes:
        with self.open(key, expected_sha256=expected_sha256) as reader:
            return reader.read()

    def download(self, key: str, dest: Path, *, expected_sha256: str | None = None,
                 max_bytes: int | None = None) -> Path:
        """Copy an object to a local file (written next to `dest`, renamed once verified). With `max_bytes`,
        the copy stops with ObjectTooLarge as soon as the object turns out to be larger."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with self.open(key, expected_sha256=expected_sha256) as reader, tmp.open("wb") as out:
                if max_bytes is None:
                    shutil.copyfileobj(reader, out, CHUNK)  # type: ignore[misc]
                else:
                    copied = 0
                    while chunk := reader.read(CHUNK):
                        copied += len(chunk)
                        if copied > max_bytes:
                            raise ObjectTooLarge(f"an object is larger than the {max_bytes} bytes allowed")
                        out.write(chunk)
                reader.read()  # EOF: makes the reader verify even when the copy stopped exactly at the end
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many were removed."""
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)
