"""Finding 1: one tenant read another's weights and images by registering an s3:// source inside the
store's bucket (`tenants/<X>/requests/.../fused`, `tenants/<X>/uploads`); tenant ids leaked through download
tokens (base64 of `expires:tenants/<t>/...`) and certificates; copies of a source had no size cap."""

from __future__ import annotations

import base64
import binascii
import io
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from core.certificates import service as certificates
from core.config import get_settings
from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.jobs import lifecycle as jobs
from core.jobs.lifecycle import create_job
from core.jobs.models import Job
from core.jobs.states import JobKind, JobState
from core.registry.models import ModelStatus
from core.storage import artifact_key, get_store
from tests.api_support import ApiEnv, erasure_body
from tests.evidence import verified_metrics
from tests.integration.worker_support import seed_model
from tests.security.conftest import put_folder, validate

VALIDATION = "https://lethe.dev/problems/validation"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def _victim_objects(env: ApiEnv, tiny_model: Path) -> tuple[uuid.UUID, str, str]:
    """Tenant X's data in the bucket: a fused model under a job's artifact prefix, and an uploaded image."""
    victim = env.principal("victim").tenant_id
    store = get_store(env.settings)
    fused = artifact_key(victim, uuid.uuid4(), uuid.uuid4(), 1, "fused")
    put_folder(store, fused, tiny_model)
    r = env.client.post("/v1/uploads", files={"file": ("x.png", _png(), "image/png")}, headers=env.auth("victim"))
    assert r.status_code == 201, r.text
    return victim, fused, f"tenants/{victim}/uploads"


def test_another_tenants_objects_are_never_registrable(s3_env: ApiEnv, tiny_model: Path) -> None:
    env = s3_env
    bucket = env.settings.store_url.split("/")[2]
    victim, fused, uploads = _victim_objects(env, tiny_model)
    attacker = env.auth("attacker")
    me = env.principal("attacker").tenant_id
    for prefix in (fused, uploads, f"tenants/{victim}/models-in/stolen", f"tenants/{victim}",
                   f"tenants/{me}/requests", f"tenants/{me}/uploads", "models/sd15", "tenants"):
        r = env.client.post("/v1/models", json={"name": f"steal-{uuid.uuid4().hex[:6]}",
                                                "source_uri": f"s3://{bucket}/lethe/{prefix}"}, headers=attacker)
        assert r.status_code == 422, (prefix, r.text)
        assert r.json()["type"] == VALIDATION and r.json()["field"] == "source_uri"
        assert str(victim) not in r.json()["detail"]
    # The tenant's own model area works end to end: registered, copied, validated.
    put_folder(get_store(env.settings), f"tenants/{me}/models-in/tiny", tiny_model)
    r = env.client.post("/v1/models", json={"name": "mine", "source_uri": f"s3://{bucket}/lethe/tenants/{me}"
                                            "/models-in/tiny"}, headers=attacker)
    assert r.status_code == 201, r.text
    model = validate(r.json()["id"])
    assert model.status == ModelStatus.ready, model.status_reason


def test_store_reads_are_scoped_by_the_owning_tenant(s3_env: ApiEnv, tiny_model: Path) -> None:
    """Even a model row that points into another tenant's objects (registration bypassed) copies nothing."""
    env = s3_env
    bucket = env.settings.store_url.split("/")[2]
    _, fused, _ = _victim_objects(env, tiny_model)
    me = env.principal("attacker").tenant_id
    model_id = seed_model(me, f"s3://{bucket}/lethe/{fused}", status=ModelStatus.pending)
    with unit_of_work() as s:
        create_job(s, tenant_id=me, kind=JobKind.validate_model, model_id=model_id)
    model = validate(model_id)
    assert model.status == ModelStatus.invalid and "models-in" in (model.status_reason or "")
    cache = get_settings().data_dir / "model-cache"
    assert not cache.exists() or not any(cache.iterdir()), "nothing of the other tenant was copied"


def test_copied_sources_are_capped(s3_env: ApiEnv, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = s3_env
    bucket = env.settings.store_url.split("/")[2]
    me = env.principal("acme").tenant_id
    put_folder(get_store(env.settings), f"tenants/{me}/models-in/tiny", tiny_model)
    size = sum(p.stat().st_size for p in tiny_model.rglob("*") if p.is_file())
    monkeypatch.setenv("LETHE_MODEL_SOURCE_MAX_BYTES", str(size - 1))
    get_settings.cache_clear()
    r = env.client.post("/v1/models", json={"name": "big", "source_uri": f"s3://{bucket}/lethe/tenants/{me}"
                                            "/models-in/tiny"}, headers=env.auth())
    assert r.status_code == 201, r.text
    model = validate(r.json()["id"])
    assert model.status == ModelStatus.invalid
    assert "LETHE_MODEL_SOURCE_MAX_BYTES" in (model.status_reason or "") and str(size) in model.status_reason


def _decoded_parts(token: str) -> list[bytes]:
    out = []
    for part in token.replace("~", ".").split("."):
        try:
            out.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except (binascii.Error, ValueError):
            continue
    return out


def test_download_tokens_are_opaque_and_still_verified(file_env: ApiEnv) -> None:
    env = file_env
    tenant = env.principal("acme").tenant_id
    key = artifact_key(tenant, uuid.uuid4(), uuid.uuid4(), 1, "adapter/pytorch_lora_weights.safetensors")
    store = get_store(env.settings)
    store.put(key, b"lora" * 1000)
    url = store.presign_get(key, 60)
    token = url.rsplit("/", 1)[1]
    for text in (token, *(p.decode("latin-1") for p in _decoded_parts(token))):
        assert str(tenant) not in text and "tenants/" not in text and "adapter" not in text, text
    r = env.client.get(url)
    assert r.status_code == 200 and r.content == b"lora" * 1000
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    assert env.client.get(f"/v1/objects/{tampered}").status_code == 403


def test_certificates_name_no_tenant_and_no_storage_location(s3_env: ApiEnv, tiny_model: Path) -> None:
    env = s3_env
    bucket = env.settings.store_url.split("/")[2]
    h = env.auth()
    me = env.principal("acme").tenant_id
    put_folder(get_store(env.settings), f"tenants/{me}/models-in/tiny", tiny_model)
    r = env.client.post("/v1/models", json={"name": "tiny", "source_uri": f"s3://{bucket}/lethe/tenants/{me}"
                                            "/models-in/tiny"}, headers=h)
    assert validate(r.json()["id"]).status == ModelStatus.ready
    rid = env.client.post("/v1/erasures", json=erasure_body(r.json()["id"]), headers=h).json()["id"]
    with unit_of_work() as s:
        job = s.scalars(sa.select(Job).where(Job.request_id == uuid.UUID(rid))).one()
        held = jobs.lease(s, job.id, "security-probe", 60)
    key = artifact_key(held.tenant_id, held.request_id, held.job_id, held.attempt, "fused/weights.safetensors")
    obj = get_store(env.settings).put(key, b"fused" * 100)
    metrics = verified_metrics()
    with unit_of_work() as s:
        stored = [jobs.StoredArtifact(name="fused/weights.safetensors", key=key, size=obj.size, sha256=obj.sha256)]
        assert jobs.complete(s, held, artifacts=stored, result=metrics) == JobState.succeeded
    document = env.client.get(f"/v1/erasures/{rid}/certificate", headers=h).json()
    text = json.dumps(document)
    assert str(me) not in text and "tenants/" not in text and bucket not in text and "s3://" not in text
    assert certificates.verify_document(document).ok
    with unit_of_work() as s:
        assert s.get(ErasureRequest, uuid.UUID(rid)).certificate == document
