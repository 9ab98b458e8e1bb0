"""s3:// object store (boto3): AWS S3, MinIO or any S3-compatible server via LETHE_S3_ENDPOINT_URL.

The sha256 computed while uploading is stored as object metadata (`x-amz-meta-sha256`) and checked on
every download: S3-compatible servers differ in how (and whether) they verify checksums themselves.
Large objects go up in multipart chunks (s3transfer).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.storage.base import (
    HashingReader,
    ObjectNotFound,
    ObjectStore,
    StoredObject,
    StoreUnavailable,
    check_key,
    spooled,
)

T = TypeVar("T")
MB = 1024 * 1024


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        multipart_threshold: int = 64 * MB,
        multipart_chunksize: int = 16 * MB,
        max_retries: int = 3,
        timeout: float = 10.0,
    ) -> None:
        if not bucket:
            raise ValueError("an s3:// store URL needs a bucket: s3://BUCKET[/prefix]")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        config = Config(
            retries={"max_attempts": max_retries, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout * 3,
            signature_version="s3v4",
            s3={"addressing_style": "path"},
        )
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        # Presigned URLs name the host they were signed for (SigV4 signs the Host header): links handed to
        # users are signed for the address users reach, which may differ from the one the services use.
        self.public_client = (
            boto3.client("s3", endpoint_url=public_endpoint_url, region_name=region, config=config)
            if public_endpoint_url and public_endpoint_url != endpoint_url else self.client
        )
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize, use_threads=False
        )

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(f"no object {key!r} in {self.url}", key=key)
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                raise StoreUnavailable(f"object store {self.url} failed to {what} {key!r}: {code or status}")
            raise
        except (BotoCoreError, S3UploadFailedError, OSError) as exc:
            raise StoreUnavailable(f"object store {self.url} unreachable while trying to {what} {key!r}: {exc}")

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (dev and tests; production buckets are provisioned)."""
        def create() -> None:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError:
                self.client.create_bucket(Bucket=self.bucket)

        self._call("create bucket", self.bucket, create)

    def put(self, key: str, source: BinaryIO | bytes | Path, *, content_type: str | None = None) -> StoredObject:
        full = self._full(key)
        with spooled(source) as (stream, size, digest):
            extra: dict[str, Any] = {"Metadata": {"sha256": digest}}
            if content_type:
                extra["ContentType"] = content_type
            self._call(
                "upload", key,
                lambda: self.client.upload_fileobj(stream, self.bucket, full, ExtraArgs=extra, Config=self.transfer),
            )
        return StoredObject(key=key, size=size, sha256=digest)

    def recorded_sha256(self, key: str) -> str | None:
        full = self._full(key)
        head = self._call("inspect", key, lambda: self.client.head_object(Bucket=self.bucket, Key=full))
        return head.get("Metadata", {}).get("sha256")

    def _open_raw(self, key: str) -> BinaryIO:
        full = self._full(key)
        return self._call("read", key, lambda: self.client.get_object(Bucket=self.bucket, Key=full))["Body"]

    def open(self, key: str, *, expected_sha256: str | None = None) -> HashingReader:
        # One GET gives both the body and the recorded digest.
        full = self._full(key)
        response = self._call("read", key, lambda: self.client.get_object(Bucket=self.bucket, Key=full))
        expected = expected_sha256 or response.get("Metadata", {}).get("sha256")
        return _GuardedReader(response["Body"], expected, key, self)

    def exists(self, key: str) -> bool:
        try:
            self.recorded_sha256(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        full = self._full(key)
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=full))

    def list(self, prefix: str) -> list[str]:
        return [key for key, _ in self.list_sizes(prefix)]

    def list_sizes(self, prefix: str) -> list[tuple[str, int]]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0

        def collect() -> list[tuple[str, int]]:
            found: list[tuple[str, int]] = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                found.extend((obj["Key"][strip:], int(obj.get("Size", 0))) for obj in page.get("Contents", []))
            return sorted(found)

        return self._call("list", prefix, collect)

    def presign_get(self, key: str, ttl: int = 3600) -> str:
        full = self._full(key)
        return self._call(
            "sign", key,
            lambda: self.public_client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=int(ttl)
            ),
        )

    def ping(self) -> None:
        self._call("reach bucket", self.bucket, lambda: self.client.head_bucket(Bucket=self.bucket))


class _GuardedReader(HashingReader):
    """A HashingReader that turns network failures in the middle of a download into StoreUnavailable."""

    def __init__(self, raw: Any, expected: str | None, key: str, store: S3Store) -> None:
        super().__init__(raw, expected, key)
        self._store = store

    def read(self, size: int = -1) -> bytes:
        return self._store._call("read", self._key, lambda: super(_GuardedReader, self).read(size))
