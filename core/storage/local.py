"""file:// object store: objects are files under a root directory (the embedded default).

The sha256 of each object is kept in a sidecar file under `{root}/.sha256/`, outside the key space.
Presigned URLs point at the API's object download route and carry an HMAC-signed, expiring token.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from core.storage.base import CHUNK, ObjectNotFound, ObjectStore, StoredObject, StoreUnavailable, check_key, spooled
from core.storage.signing import sign_download

META_DIR = ".sha256"


class FileStore(ObjectStore):
    def __init__(self, root: Path, *, signing_key: bytes, url_base: str = "/v1/objects") -> None:
        self.root = Path(root)
        self.url = f"file://{self.root}"
        self._signing_key = signing_key
        self._url_base = url_base.rstrip("/")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _meta(self, key: str) -> Path:
        return self.root / META_DIR / f"{check_key(key)}.sha256"

    def put(self, key: str, source: BinaryIO | bytes | Path, *, content_type: str | None = None) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with spooled(source) as (stream, size, digest), tmp.open("wb") as out:
                shutil.copyfileobj(stream, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            meta = self._meta(key)
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_text(digest)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return StoredObject(key=key, size=size, sha256=digest)

    def recorded_sha256(self, key: str) -> str | None:
        meta = self._meta(key)
        return meta.read_text().strip() if meta.is_file() else None

    def _open_raw(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in the store", key=key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._meta(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        keys = []
        for path in start.rglob("*"):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and rel.startswith(prefix) and not rel.startswith(META_DIR + "/") \
                    and not path.name.endswith(".part"):
                keys.append(rel)
        return sorted(keys)

    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        return [(key, self._path(key).stat().st_size) for key in self.list(prefix)]

    def presign_get(self, key: str, ttl: int = 3600) -> str:
        check_key(key)
        token = sign_download(self._signing_key, key, int(time.time()) + ttl)
        return f"{self._url_base}/{token}"

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".ping-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreUnavailable(f"object directory {self.root} is not writable: {exc}")
