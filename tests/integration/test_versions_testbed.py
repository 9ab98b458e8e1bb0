"""Takedowns accumulate on the shipped testbed, through the API and the worker's code: erase an object
(v1 -> v2), then a style on v2 (v2 -> v3). v3 still forgets both and keeps the rest of v1; its cumulative
adapter, loaded on v1 with stock diffusers, draws what its fused weights draw; its certificate lists both
concepts and chains to v2's. An erasure on v3 that brings the first concept back fails the lineage check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.certificates.chain import verify_chain
from core.storage import get_store
from core.testbed import paths
from tests.api_support import ApiEnv
from tests.integration.versions_support import run_jobs, versions_env
from tests.integration.worker_support import seed_model

pytestmark = pytest.mark.slow(minutes=3)
OBJECT, STYLE = "star", "dotted"


@pytest.fixture
def env(pg_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, real_verification: None
        ) -> Iterator[ApiEnv]:
    yield from versions_env(pg_url, s3_endpoint, monkeypatch)


def _erase_and_apply(env: ApiEnv, auth: dict[str, str], mid: str, target: str, kind: str) -> dict[str, Any]:
    r = env.client.post("/v1/erasures", json={"model_id": mid, "concepts": [{"target": target, "kind": kind}]},
                        headers=auth)
    assert r.status_code == 202, r.text
    run_jobs()
    erasure = env.client.get(f"/v1/erasures/{r.json()['id']}", headers=auth).json()
    assert erasure["status"] == "succeeded", erasure["error"]
    r = env.client.post(f"/v1/models/{mid}/versions", json={"erasure_id": erasure["id"]}, headers=auth)
    assert r.status_code == 201, r.text
    assert run_jobs() == [("apply_version", "succeeded")]
    return erasure


def _download(prefix: str, names: list[str], dest: Path) -> Path:
    store = get_store()
    for name in names:
        store.download(f"{prefix}/{name}", dest / name)
    return dest


def _image(pipe: Any) -> np.ndarray:
    import torch

    out = pipe(f"a {OBJECT} image in {STYLE} style", num_inference_steps=8, guidance_scale=5.0,
               generator=torch.Generator().manual_seed(1234), output_type="np")
    return np.asarray(out.images[0])


def test_two_takedowns_accumulate_and_a_lineage_break_fails(env: ApiEnv, tmp_path: Path) -> None:
    c, auth = env.client, env.auth()
    tenant = env.principal().tenant_id
    source = paths.testbed_dir() / "pipeline"
    mid = str(seed_model(tenant, source, fingerprint="fp-testbed"))
    first = _erase_and_apply(env, auth, mid, OBJECT, "object")
    assert first["model_version"] == 1
    second = _erase_and_apply(env, auth, mid, STYLE, "style")
    assert second["model_version"] == 2

    # v3 (measured by the style erasure's own verification, against v1): both concepts gone, the rest kept.
    summary = second["metrics"]["summary"]
    for concept in (OBJECT, STYLE):
        row = summary[concept]
        assert row["ua"] >= 0.99, (concept, row)
        assert row["ira_rel"] >= 0.97 and row["cra_rel"] >= 0.97, (concept, row)
    checks = second["metrics"]["verification"]
    assert checks[f"ua[{OBJECT}]"]["passed"] and checks[f"ua[{STYLE}]"]["passed"]
    # Retention held against v1, so the version the erasure started from was not measured (it is only when a
    # retention check fails: tests/unit/test_lineage_start.py).
    assert first["metrics"].get("start_retention") is None and second["metrics"].get("start_retention") is None

    versions = c.get(f"/v1/models/{mid}/versions", headers=auth).json()
    assert versions["head"] == 3
    v2, v3 = (c.get(f"/v1/models/{mid}/versions/{n}", headers=auth).json() for n in (2, 3))
    assert [x["target"] for x in v3["erased_concepts"]] == [OBJECT, STYLE]
    assert v3["adapter"]["exact"] is True

    # The cumulative adapter on v1, loaded by stock diffusers, draws what v3's fused weights draw.
    from diffusers import StableDiffusionPipeline

    prefix = f"tenants/{tenant}/models/{mid}/versions/3"
    fused_names = [a["name"] for a in v3["artifacts"] if a["name"].startswith("fused/")]
    fused = _download(prefix, fused_names, tmp_path / "v3") / "fused"
    adapter = _download(prefix, ["adapter/pytorch_lora_weights.safetensors"], tmp_path / "v3") / "adapter"
    v1 = StableDiffusionPipeline.from_pretrained(source, safety_checker=None)
    v1.set_progress_bar_config(disable=True)
    before = _image(v1)
    v1.load_lora_weights(str(adapter), weight_name="pytorch_lora_weights.safetensors")
    via_adapter = _image(v1)
    v3_pipe = StableDiffusionPipeline.from_pretrained(fused, safety_checker=None)
    v3_pipe.set_progress_bar_config(disable=True)
    via_fused = _image(v3_pipe)
    assert float(np.abs(via_adapter - via_fused).max()) < 2e-2
    assert float(np.abs(before - via_fused).max()) > 0.1, "the erasures changed what v1 draws"

    # v3's certificate lists both concepts with fresh measurements and chains to v2's, offline.
    certificate = v3["certificate"]["certificate"]
    lineage = certificate["lineage"]
    assert [(x["target"], x["passed"]) for x in lineage["erased_concepts"]] == [(OBJECT, True), (STYLE, True)]
    assert lineage["previous_certificate_sha256"] == v2["certificate_sha256"]
    chain = verify_chain([v3["certificate"], v2["certificate"]])
    assert chain.ok, chain.reason
    assert [link.model_version for link in chain.links] == [2, 1]

    # An erasure on v3 whose training brings the object back (here: v1's UNet before it trains) fails.
    from safetensors.torch import load_file

    from core.spare import erase

    v1_unet = load_file(source / "unet" / "diffusion_pytorch_model.safetensors")

    def brings_it_back(pipeline: Any, spec: Any, config: Any, **kw: Any) -> Any:
        pipeline.unet.load_state_dict(v1_unet)
        return erase(pipeline, spec, config, **kw)

    r = c.post("/v1/erasures", json={"model_id": mid, "concepts": [{"target": "heart", "kind": "object"}],
                                     "params": {"max_rounds": 1}}, headers=auth)
    assert r.status_code == 202 and r.json()["model_version"] == 3
    run_jobs(erase_fn=brings_it_back)
    broken = c.get(f"/v1/erasures/{r.json()['id']}", headers=auth).json()
    assert broken["status"] == "failed" and broken["certificate_available"] is False
    assert f"ua[{OBJECT}]" in broken["error"], broken["error"]
    assert broken["metrics"]["verification"][f"ua[{OBJECT}]"]["passed"] is False
