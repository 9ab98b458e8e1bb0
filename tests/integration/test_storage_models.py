"""Model sources for workers (s3:// prefixes downloaded and checked), the model LRU, the verification rule."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.config import Settings, get_settings
from core.registry.cache import ModelCache
from core.registry.local_copy import ModelSourceError, local_model_dir
from core.spare.loading import detect_architecture, fingerprint
from core.storage import IntegrityError, get_store
from core.storage.s3 import S3Store
from tests.integration.worker_support import tiny_model  # noqa: F401  (fixture)


def test_s3_model_prefix_is_downloaded_verified_and_cached(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Path  # noqa: F811
) -> None:
    bucket = f"m{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("LETHE_STORE_URL", f"s3://{bucket}/store")
    monkeypatch.setenv("LETHE_S3_ENDPOINT_URL", s3_endpoint)
    get_settings.cache_clear()
    settings = get_settings()
    store = get_store(settings)
    assert isinstance(store, S3Store)
    store.ensure_bucket()
    tenant = uuid.uuid4()
    area = f"tenants/{tenant}/models-in"
    for path in sorted(p for p in tiny_model.rglob("*") if p.is_file()):
        store.put(f"{area}/tiny/{path.relative_to(tiny_model).as_posix()}", path)
    uri = f"s3://{bucket}/store/{area}/tiny"
    local = local_model_dir(uri, settings, tenant_id=tenant)
    assert detect_architecture(local) == "sd1"
    assert fingerprint(local) == fingerprint(tiny_model)
    assert local_model_dir(uri, settings, tenant_id=tenant) == local, "cached, not downloaded again"
    with pytest.raises(ModelSourceError, match="no objects"):
        local_model_dir(f"s3://{bucket}/store/{area}/missing", settings, tenant_id=tenant)
    with pytest.raises(ModelSourceError, match="models-in"):
        local_model_dir(f"s3://{bucket}/elsewhere/x", settings, tenant_id=tenant)
    with pytest.raises(ModelSourceError, match="models-in"):
        local_model_dir(uri, settings, tenant_id=uuid.uuid4())  # another tenant's area
    # A corrupted object never becomes a model folder.
    key = f"{area}/bad/unet/config.json"
    store.put(key, b"{}")
    store.client.put_object(Bucket=bucket, Key=f"store/{key}", Body=b"[]", Metadata={"sha256": "0" * 64})
    with pytest.raises(IntegrityError):
        local_model_dir(f"s3://{bucket}/store/{area}/bad", settings, tenant_id=tenant)


def test_model_sources_that_are_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    tenant = uuid.uuid4()
    with pytest.raises(ModelSourceError, match="does not exist"):
        local_model_dir(f"file://{tmp_path / 'models' / 'nope'}", settings, tenant_id=tenant)
    with pytest.raises(ModelSourceError, match="hf:// sources are disabled"):
        local_model_dir("hf://org/repo@main", settings, tenant_id=tenant)
    with pytest.raises(ModelSourceError, match="unsupported model source"):
        local_model_dir("ftp://x/y", settings, tenant_id=tenant)


def test_model_cache_is_a_bounded_lru() -> None:
    cache = ModelCache(2)
    loads: list[str] = []

    def loader(name: str):  # type: ignore[no-untyped-def]
        return lambda: loads.append(name) or name

    assert cache.get("a", loader("a")) == "a"
    assert cache.get("b", loader("b")) == "b"
    assert cache.get("a", loader("a")) == "a"  # hit; a is now the most recent
    cache.get("c", loader("c"))  # evicts b
    assert "b" not in cache and "a" in cache and "c" in cache
    cache.get("b", loader("b"))
    assert loads == ["a", "b", "c", "b"] and cache.hits == 1
    cache.discard("b")
    assert "b" not in cache and len(cache) == 1


