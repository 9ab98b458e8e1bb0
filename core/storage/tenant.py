"""Tenant-scoped views of the object store.

Everything a tenant owns lives under `tenants/{tenant_id}/`: `uploads/` and `requests/` (written by the
service), and `models-in/` (model folders an operator or the tenant places there, the only object-store
prefix that model sources may come from). A `ScopedStore` confines every key to one such prefix: keys are
relative to it and checked (no `..`, no empty segments), so a read through a tenant's view can only return
that tenant's objects, whatever key it is asked for.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import BinaryIO

from core.storage.base import HashingReader, ObjectNotFound, ObjectStore, StoredObject, check_key

TENANTS = "tenants"
MODELS_IN = "models-in"


class ScopedStore:
    """One prefix of a store; keys given to and returned by it are relative to the prefix."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.prefix = check_key(prefix.strip("/")) + "/"

    def key(self, relative: str) -> str:
        """The store key of `relative` (refused when it could leave the prefix)."""
        return self.prefix + check_key(relative)

    def relative(self, key: str) -> str:
        """The part of a store key below this prefix; ObjectNotFound for a key outside it."""
        if not key.startswith(self.prefix) or key == self.prefix:
            raise ObjectNotFound("no such object in this scope")
        return check_key(key[len(self.prefix):])

    def put(self, relative: str, source: BinaryIO | bytes | Path, *, content_type: str | None = None) -> StoredObject:
        return self.store.put(self.key(relative), source, content_type=content_type)

    def open(self, relative: str, *, expected_sha256: str | None = None) -> HashingReader:
        return self.store.open(self.key(relative), expected_sha256=expected_sha256)

    def exists(self, relative: str) -> bool:
        return self.store.exists(self.key(relative))

    def recorded_sha256(self, relative: str) -> str | None:
        return self.store.recorded_sha256(self.key(relative))

    def download(self, relative: str, dest: Path, *, expected_sha256: str | None = None,
                 max_bytes: int | None = None) -> Path:
        return self.store.download(self.key(relative), dest, expected_sha256=expected_sha256, max_bytes=max_bytes)

    def list_sizes(self, relative_prefix: str = "") -> list[tuple[str, int]]:
        """(relative key, size) of the objects below `relative_prefix` (a folder: whole segments only)."""
        folder = self.prefix + (check_key(relative_prefix.strip("/")) + "/" if relative_prefix.strip("/") else "")
        return [(self.relative(key), size) for key, size in self.store.list_sizes(folder)
                if key.startswith(folder)]

    def presign_get(self, relative: str, ttl: int = 3600) -> str:
        return self.store.presign_get(self.key(relative), ttl)


def tenant_prefix(tenant_id: uuid.UUID | str) -> str:
    segment = str(tenant_id)
    if "/" in segment:
        raise ValueError(f"invalid tenant id {segment!r}")
    return check_key(f"{TENANTS}/{segment}")


def tenant_store(store: ObjectStore, tenant_id: uuid.UUID | str) -> ScopedStore:
    """Everything the tenant owns: `tenants/{tenant_id}/`."""
    return ScopedStore(store, tenant_prefix(tenant_id))


def models_in(store: ObjectStore, tenant_id: uuid.UUID | str) -> ScopedStore:
    """Where the tenant's object-store model sources live: `tenants/{tenant_id}/models-in/`."""
    return ScopedStore(store, f"{tenant_prefix(tenant_id)}/{MODELS_IN}")


def owner_of(key: str) -> str:
    """The tenant segment of a key under `tenants/`; ObjectNotFound for any other key."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != TENANTS or not parts[1]:
        raise ObjectNotFound("no such object")
    return parts[1]
