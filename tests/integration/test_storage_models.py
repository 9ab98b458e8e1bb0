"""Model sources for workers (s3:// prefixes downloaded and checked), the model LRU, the verification rule."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.config import Settings, get_settings
from core.erasure.verification import verify
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


def test_verification_rule() -> None:
    s = Settings(verify_min_unlearning_accuracy=0.9, verify_min_retention=0.95, verify_min_gap_closure=0.5,
                 verify_max_retain_drift=0.2)
    good = {"probe": {"forget_gap_closure": 0.8, "retain_drift_relative": 0.05},
            "testbed": {"ua": 0.97, "ira": 0.9, "base_ira": 0.92, "cra": 0.99, "base_cra": 1.0}}
    verdict = verify(good, s)
    assert verdict.ok and set(verdict.checks) == {"ua", "ira_retention", "cra_retention", "forget_gap_closure",
                                                  "retain_drift_relative"}
    assert all(c["passed"] for c in verdict.checks.values())
    bad = {"probe": {"forget_gap_closure": 0.8, "retain_drift_relative": 0.5},
           "testbed": {"ua": 0.5, "ira": 0.5, "base_ira": 0.92}}
    verdict = verify(bad, s)
    assert not verdict.ok
    assert "ua 0.500 is below the required 0.900" in verdict.reason
    assert "ira_retention 0.543 is below the required 0.950" in verdict.reason
    assert "retain_drift_relative 0.500 is above the allowed 0.200" in verdict.reason
    assert verdict.checks["forget_gap_closure"]["passed"] is True
    nothing = verify({}, s)
    assert not nothing.ok and "no verification metrics" in nothing.reason


def test_verification_reads_the_testbed_evaluators_per_target_summary() -> None:
    s = Settings(verify_min_unlearning_accuracy=0.9, verify_min_retention=0.95)
    metrics = {"probe": {"forget_gap_closure": 0.9},
               "summary": {"circle": {"ua": 0.99, "ira_rel": 0.98, "cra_rel": 1.0, "base_ua": 0.05},
                           "square": {"ua": 0.6, "ira_rel": 0.97, "cra_rel": 0.9}}}
    verdict = verify(metrics, s)
    assert not verdict.ok
    assert verdict.checks["ua[circle]"]["passed"] and verdict.checks["ira_rel[circle]"]["passed"]
    assert "ua[square] 0.600 is below the required 0.900" in verdict.reason
    assert "cra_rel[square] 0.900 is below the required 0.950" in verdict.reason
