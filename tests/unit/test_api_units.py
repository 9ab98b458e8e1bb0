"""Unit tests of the API's pure parts: key format, scopes, sources, params bounds, cursors, limiter, signing."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.ratelimit import RateLimiter
from core import signing
from core.certificates.service import sign_certificate, verify_document
from core.config import Settings
from core.erasure.schemas import ErasureCreate
from core.errors import ValidationFailed
from core.pagination import decode_cursor, encode_cursor, keyset_cursor, parse_keyset
from core.registry.sources import validate_source_uri
from core.tenancy import keys
from core.tenancy.schemas import Principal, parse_scopes


def test_key_format_checksum_and_hash() -> None:
    key = keys.generate_key()
    assert key.startswith("lth_") and len(key.split("_")) == 3
    assert keys.parse_key(key) == key[:14]
    # One changed character in the random part breaks the checksum.
    flipped = key[:8] + ("a" if key[8] != "a" else "b") + key[9:]
    assert keys.parse_key(flipped) is None
    assert keys.parse_key(key + "x") is None
    assert keys.parse_key("lth_short_abcdef") is None
    assert keys.hash_key(key, b"s1") != keys.hash_key(key, b"s2")
    assert len({keys.generate_key() for _ in range(100)}) == 100


def test_secret_key_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = keys.secret_key(settings)
    assert (tmp_path / "secret.key").exists()
    assert oct((tmp_path / "secret.key").stat().st_mode & 0o777) == "0o600"
    keys._file_secret.cache_clear()
    assert keys.secret_key(settings) == first
    assert keys.secret_key(Settings(data_dir=tmp_path, secret_key="configured")) == b"configured"


def test_scopes() -> None:
    assert parse_scopes("models:read, admin,models:read") == ["models:read", "admin"]
    with pytest.raises(ValueError, match="unknown scope"):
        parse_scopes("models:read,root")
    with pytest.raises(ValueError):
        parse_scopes(" , ")
    p = Principal(uuid.uuid4(), "t", uuid.uuid4(), "lth_x", frozenset({"admin"}))
    assert p.has("audit:read")
    q = Principal(uuid.uuid4(), "t", uuid.uuid4(), "lth_x", frozenset({"models:read"}))
    assert q.has("models:read") and not q.has("models:write")


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Settings, Path, Path]:
    root = tmp_path / "models"
    (root / "sd15").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "inner").symlink_to(root / "sd15")
    return Settings(data_dir=tmp_path, model_roots=[root], store_url="s3://lethe-bucket/objects"), root, outside


def test_file_sources(roots: tuple[Settings, Path, Path]) -> None:
    settings, root, outside = roots
    assert validate_source_uri(f"file://{root}/sd15", settings, tenant_id=None) == f"file://{root}/sd15"
    # symlinks resolved
    assert validate_source_uri(f"file://{root}/inner", settings, tenant_id=None) == f"file://{root}/sd15"
    assert validate_source_uri(f"file://{root}/sd15/../sd15", settings, tenant_id=None) == f"file://{root}/sd15"
    for bad in (
        f"file://{root}/escape",  # symlink out of the root
        f"file://{root}/../elsewhere",  # .. out of the root
        f"file://{outside}",
        f"file://{root}/missing",
        "file://host/models/sd15",
        "file:relative/path",
        "ftp://x/y",
        "/plain/path",
    ):
        with pytest.raises(ValidationFailed):
            validate_source_uri(bad, settings, tenant_id=None)


def test_s3_and_hub_sources(roots: tuple[Settings, Path, Path]) -> None:
    settings, _, _ = roots
    me, other = uuid.uuid4(), uuid.uuid4()
    area = f"s3://lethe-bucket/objects/tenants/{me}/models-in"
    assert validate_source_uri(f"{area}/sd15/", settings, tenant_id=me) == f"{area}/sd15"
    for bad in ("s3://other-bucket/models", "s3://lethe-bucket/", "s3://lethe-bucket/a/../b", "s3://Bad_Bucket/x",
                "s3://lethe-bucket/models/sd15", "s3://lethe-bucket/objects/models/sd15", f"{area}", f"{area}/",
                f"s3://lethe-bucket/objects/tenants/{other}/models-in/sd15",
                f"s3://lethe-bucket/objects/tenants/{me}/uploads", f"s3://lethe-bucket/objects/tenants/{me}/requests",
                f"s3://lethe-bucket/tenants/{me}/models-in/sd15", f"{area}/a b"):
        with pytest.raises(ValidationFailed):
            validate_source_uri(bad, settings, tenant_id=me)
    with pytest.raises(ValidationFailed, match="local"):
        validate_source_uri(f"{area}/sd15", settings.model_copy(update={"store_url": "file:///x"}), tenant_id=me)
    with pytest.raises(ValidationFailed, match="LETHE_ALLOW_HUB"):
        validate_source_uri("hf://org/repo@main", settings, tenant_id=me)
    hub = settings.model_copy(update={"allow_hub": True})
    assert validate_source_uri("hf://runwayml/sd-v1-5@abc123", hub, tenant_id=me) == "hf://runwayml/sd-v1-5@abc123"
    for bad in ("hf://org/repo", "hf://org@rev", "hf://org/repo@", "hf://org/repo@../x"):
        with pytest.raises(ValidationFailed):
            validate_source_uri(bad, hub, tenant_id=me)


def test_params_are_the_engine_configs_with_every_field_optional() -> None:
    """`params` is derived from SpareConfig / EsdConfig: same names, bounds and descriptions; all optional."""
    from core.erasure.params import NOT_PER_REQUEST, EsdParams, SpareParams, validate_params
    from core.spare.specs import EsdConfig, SpareConfig

    for params, engine in ((SpareParams, SpareConfig), (EsdParams, EsdConfig)):
        assert set(params.model_fields) == set(engine.model_fields) - NOT_PER_REQUEST
        for name, info in engine.model_fields.items():
            if name in NOT_PER_REQUEST or name == "method":
                continue
            derived = params.model_fields[name]
            assert derived.default is None and derived.description == info.description, name
            assert derived.metadata == info.metadata, name
        assert params(method=engine.model_fields["method"].default).given() == {}
    # The engine's bounds and cross-field rules hold in the request body.
    with pytest.raises(ValidationError):
        SpareParams(steps=0)
    with pytest.raises(ValidationError):
        SpareParams(rank=1000)
    with pytest.raises(ValidationError, match="top_k exceeds max_modules"):
        SpareParams(top_k=100)
    assert SpareParams(top_k=100, max_modules=200).engine_config().top_k == 100
    with pytest.raises(ValidationError, match="Extra inputs"):
        SpareParams(unknown=1)
    with pytest.raises(ValidationError, match="valid integer"):
        validate_params("spare", {"steps": "10"})  # strict: a number is a JSON number
    # Fields the old hand-kept list left out are settable now.
    assert validate_params("spare", {"timestep_gamma": 2.0}).engine_config().timestep_gamma == 2.0
    assert validate_params("esd", {"start_guidance": 4.0}).engine_config().start_guidance == 4.0
    with pytest.raises(ValidationError):
        validate_params("esd", {"device": "cuda"})  # the deployment picks the device


def test_stored_params_load_in_the_response() -> None:
    """A request's params as stored (JSON, without `method`, maybe with keys an older version knew) load."""
    from pydantic import TypeAdapter

    from core.erasure.params import ErasureParamsOut, EsdParamsOut, SpareParamsOut, with_method

    out = TypeAdapter(ErasureParamsOut)
    stored = out.validate_python(with_method({"method": "esd", "params": {"negative_guidance": 2, "old": 1}})["params"])
    assert isinstance(stored, EsdParamsOut) and stored.negative_guidance == 2
    assert stored.model_extra == {"old": 1}
    assert isinstance(out.validate_python(with_method({"method": "spare", "params": None})["params"]), SpareParamsOut)


def test_erasure_body_rules() -> None:
    base = {"model_id": str(uuid.uuid4()), "concepts": [{"target": "circle"}]}
    ErasureCreate.model_validate(base)
    with pytest.raises(ValidationError, match="listed twice"):
        ErasureCreate.model_validate({**base, "concepts": [{"target": "a"}, {"target": "A"}]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ErasureCreate.model_validate({**base, "method": "esd", "params": {"rank": 4}})
    with pytest.raises(ValidationError, match="params are for method 'esd'"):
        ErasureCreate.model_validate({**base, "params": {"method": "esd"}})
    esd = ErasureCreate.model_validate({**base, "method": "esd", "params": {"negative_guidance": 2}})
    assert esd.params.given() == {"negative_guidance": 2.0}
    with pytest.raises(ValidationError, match="surrogate equals"):
        ErasureCreate.model_validate({**base, "concepts": [{"target": "dog", "surrogate": "Dog"}]})
    with pytest.raises(ValidationError):
        ErasureCreate.model_validate({**base, "concepts": [{"target": "x"}] * 17})
    with pytest.raises(ValidationError):
        ErasureCreate.model_validate({**base, "concepts": [{"target": "x", "prompts": ["p" * 501]}]})
    with pytest.raises(ValidationError, match="timezone"):
        ErasureCreate.model_validate({**base, "legal": {"regime": "gdpr", "basis": "b", "due_at": "2026-12-01T00:00"}})


def test_cursors() -> None:
    assert decode_cursor(encode_cursor({"s": 5})) == {"s": 5}
    at = datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=UTC)
    rid = uuid.uuid4()
    assert parse_keyset(keyset_cursor(at, rid)) == (at, rid)
    for bad in ("!!!", encode_cursor({"t": "x", "i": "y"}), "bm90IGpzb24"):
        with pytest.raises(ValidationFailed):
            parse_keyset(bad)


def test_rate_limiter() -> None:
    limiter = RateLimiter(per_minute=6, anonymous_per_minute=3)
    allowed = sum(1 for _ in range(30) if limiter.acquire("k") == 0)
    assert allowed == 6  # at most N in any 60 s
    wait = limiter.acquire("k")
    assert 0 < wait <= 60
    assert limiter.acquire("other") == 0
    assert [limiter.acquire_anonymous("10.0.0.1") == 0 for _ in range(4)] == [True, True, True, False]
    assert limiter.acquire_anonymous("10.0.0.2") == 0 and limiter.acquire("k2") == 0  # separate budgets
    assert RateLimiter(0).acquire("k") == 0 and RateLimiter(0).acquire_anonymous("a") == 0


def test_rate_limiter_fails_open_when_its_storage_is_down() -> None:
    limiter = RateLimiter(per_minute=1, storage_url="redis://127.0.0.1:1/0")
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]


def test_signing_and_offline_verification(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    key = signing.private_key(settings)
    assert (tmp_path / "signing.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    body = {"request": {"id": "r1"}, "metrics": {"ua": 0.97}}
    doc = sign_certificate(key, body)
    assert verify_document(doc, key.public_key()).ok
    forged = {"certificate": {**body, "metrics": {"ua": 0.10}}, "signature": doc["signature"]}
    assert not verify_document(forged, key.public_key()).ok
    other = signing.parse_private_key(signing._new_pem())
    assert "different key" in verify_document(doc, other.public_key()).reason
    assert verify_document({"nope": 1}).ok is False
    # A configured key (base64 seed) works too.
    seed = os.urandom(32)
    import base64

    configured = Settings(data_dir=tmp_path, signing_key=base64.b64encode(seed).decode())
    assert signing.public_raw(signing.private_key(configured).public_key()) != signing.public_raw(key.public_key())
