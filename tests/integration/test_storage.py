"""Object store: the same contract on file:// and on s3:// (moto's S3 server over HTTP)."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.config import get_settings
from core.storage import IntegrityError, ObjectNotFound, ObjectStore, StoreUnavailable, artifact_key, make_store
from core.storage.local import FileStore
from core.storage.s3 import S3Store
from core.storage.signing import InvalidDownloadToken, verify_download


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ObjectStore]:
    if request.param == "file":
        yield make_store(f"file://{tmp_path / 'objects'}")
        return
    endpoint = request.getfixturevalue("s3_endpoint")
    monkeypatch.setenv("LETHE_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("LETHE_S3_MULTIPART_THRESHOLD_MB", "5")
    monkeypatch.setenv("LETHE_S3_MULTIPART_CHUNK_MB", "5")
    get_settings.cache_clear()
    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3 = make_store(f"s3://{bucket}/pre/fix")
    assert isinstance(s3, S3Store)
    s3.ensure_bucket()
    yield s3


def test_put_get_round_trip_reports_sha256_and_size(store: ObjectStore) -> None:
    data = os.urandom(10_000)
    stored = store.put("a/b/c.bin", io.BytesIO(data))
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get("a/b/c.bin") == data
    assert store.recorded_sha256("a/b/c.bin") == stored.sha256
    assert store.exists("a/b/c.bin")
    assert not store.exists("a/b/missing.bin")
    assert store.list("a/") == ["a/b/c.bin"]
    store.ping()


def test_paths_and_bytes_sources(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "x.txt"
    src.write_bytes(b"hello")
    assert store.put("k/path.txt", src).sha256 == hashlib.sha256(b"hello").hexdigest()
    assert store.put("k/bytes.txt", b"hello").size == 5
    dest = store.download("k/path.txt", tmp_path / "out" / "y.txt")
    assert dest.read_bytes() == b"hello"


def test_large_object_uses_multipart_and_round_trips(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(11 * 1024 * 1024 + 17)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    stored = store.put("big/big.bin", src)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    if isinstance(store, S3Store):
        head = store.client.head_object(Bucket=store.bucket, Key=store._full("big/big.bin"))
        assert head["ETag"].strip('"').endswith("-3"), "expected a 3-part multipart upload"
        assert head["Metadata"]["sha256"] == stored.sha256
    out = store.download("big/big.bin", tmp_path / "back.bin")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == stored.sha256


def test_corruption_is_detected_on_read(store: ObjectStore, tmp_path: Path) -> None:
    store.put("c/obj.bin", b"original content")
    # Swap the content behind the store's back, keeping the recorded digest.
    if isinstance(store, FileStore):
        (store.root / "c/obj.bin").write_bytes(b"tampered content")
    else:
        assert isinstance(store, S3Store)
        store.client.put_object(
            Bucket=store.bucket, Key=store._full("c/obj.bin"), Body=b"tampered content",
            Metadata={"sha256": hashlib.sha256(b"original content").hexdigest()},
        )
    with pytest.raises(IntegrityError, match="corrupt"):
        store.get("c/obj.bin")
    with pytest.raises(IntegrityError):
        store.download("c/obj.bin", tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists(), "a corrupt download must not leave a file behind"
    # An expected digest given by the caller (the artifact row) wins over the recorded one.
    with pytest.raises(IntegrityError):
        store.get("c/obj.bin", expected_sha256="0" * 64)


def test_missing_object_and_delete(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("nope/x")
    store.put("d/1", b"1")
    store.put("d/2", b"2")
    store.put("e/3", b"3")
    store.delete("d/1")
    store.delete("d/1")  # idempotent
    assert store.list("d/") == ["d/2"]
    assert store.delete_prefix("d/") == 1
    assert store.list("d/") == []
    assert store.list("e/") == ["e/3"]


def test_presigned_get_downloads_the_object(store: ObjectStore) -> None:
    store.put("p/file.txt", b"presigned!")
    url = store.presign_get("p/file.txt", ttl=60)
    if isinstance(store, S3Store):
        assert "X-Amz-Expires=60" in url
        assert httpx.get(url).content == b"presigned!"
    else:
        assert isinstance(store, FileStore)
        token = url.rsplit("/", 1)[1]
        assert verify_download(store._signing_key, token) == "p/file.txt"
        with pytest.raises(InvalidDownloadToken, match="expired"):
            verify_download(store._signing_key, token, now=10**12)
        with pytest.raises(InvalidDownloadToken, match="signature"):
            verify_download(b"another key", token)


def test_keys_are_deterministic_and_safe() -> None:
    t, r, j = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    key = artifact_key(t, r, j, 2, "adapter/pytorch_lora_weights.safetensors")
    assert key == f"tenants/{t}/requests/{r}/jobs/{j}/attempt-2/adapter/pytorch_lora_weights.safetensors"
    assert artifact_key(t, r, j, 2, "report.json") != artifact_key(t, r, j, 3, "report.json")
    for bad in ["../etc/passwd", "/abs", "a//b", "a/./b", "sp ace", ""]:
        with pytest.raises(ValueError):
            artifact_key(t, r, j, 1, bad) if bad else make_store("file:///tmp/x").get(bad)


def test_unreachable_s3_is_store_unavailable() -> None:
    store = S3Store("bucket", endpoint_url="http://127.0.0.1:9", max_retries=1, timeout=1)
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.put("x/y", b"data")


def test_unsupported_url() -> None:
    with pytest.raises(ValueError, match="unsupported object store URL"):
        make_store("ftp://host/x")
    with pytest.raises(ValueError, match="bucket"):
        make_store("s3://")


def test_presigned_links_point_at_the_public_endpoint(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Services talk to S3 at one address; links for users are signed for LETHE_S3_PUBLIC_ENDPOINT_URL."""
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    assert public != s3_endpoint
    monkeypatch.setenv("LETHE_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("LETHE_S3_PUBLIC_ENDPOINT_URL", public)
    get_settings.cache_clear()
    s3 = make_store(f"s3://b{uuid.uuid4().hex[:12]}")
    assert isinstance(s3, S3Store)
    s3.ensure_bucket()
    s3.put("x/artifact.bin", b"payload")
    url = s3.presign_get("x/artifact.bin", ttl=300)
    assert url.startswith(public + "/") and "X-Amz-Signature=" in url
    assert httpx.get(url).content == b"payload"
    # Without the setting, links name the services' endpoint, as before.
    monkeypatch.delenv("LETHE_S3_PUBLIC_ENDPOINT_URL")
    get_settings.cache_clear()
    private = make_store(s3.url)
    assert private.presign_get("x/artifact.bin").startswith(s3_endpoint + "/")
