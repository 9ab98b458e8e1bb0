"""A model folder that declares its vocabulary (lethe.json) is erased through the one generic path: the
worker's erasure path imports nothing of the testbed, and the request takes the folder's declared phrasing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.testbed.paths import SHIPPED
from tests.integration.worker_support import probe_job, seed_model, seed_request, seed_tenant, use_database

pytestmark = pytest.mark.slow(minutes=0.2)

SPY = """
def spy(pipeline, spec, config, **kw):
    seen["spec"] = spec.model_dump(mode="json")
    seen["config"] = config.model_dump(mode="json")
    return real(pipeline, spec, config, **kw)
"""
# The testbed modules the child imported by the end of the job.
IMPORTED = ('{"testbed_modules": sorted(m for m in sys.modules '
            'if m.startswith("core.testbed") or m == "core.spare.testbed_eval")}')


@pytest.fixture
def user_model(tmp_path: Path) -> Path:
    """The testbed's weights as a user's own model: no testbed manifest, the user's own lethe.json."""
    folder = tmp_path / "user-model"
    shutil.copytree(SHIPPED / "pipeline", folder)
    (folder / "lethe.json").write_text(json.dumps({
        "format": 1,
        "concepts": {"object": ["circle", "square", "star"], "style": ["solid", "dotted"]},
        "prompt_templates": {"object": ["a {object} in {style} style", "{style} style {object}"]},
        "retain_templates": {"object": ["a {object} image in {style} style"]},
        "default_surrogates": {"circle": "star"},
        "label_templates": {"object": ["a {object} image in {style} style"]},
        "heldout_templates": {"object": ["the {style} {object} shape"]},
    }))
    return folder


def test_declared_vocabulary_runs_the_generic_path_without_the_testbed(pg_url: str, user_model: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    use_database(monkeypatch, pg_url)
    tenant = seed_tenant()
    model = seed_model(tenant, user_model, fingerprint="fp-user")
    params = {"steps": 5, "sample_steps": 2, "grid_seeds": 1, "saliency_batches": 1, "timestep_grid": 2}
    _, job_id = seed_request(tenant, model, target="circle", surrogate="object", params=params)
    result = probe_job(job_id, SPY, IMPORTED)
    assert result["outcome"] in ("succeeded", "failed")
    assert result["testbed_modules"] == [], "the worker's erasure path imported the testbed"
    (concept,) = result["spec"]["concepts"]
    assert concept["surrogate"] == "star", "the folder's default surrogate replaces the generic neutral word"
    assert concept["prompts"] == ["a circle in solid style", "a circle in dotted style", "solid style circle",
                                  "dotted style circle"]
    assert set(result["spec"]["retain"]) == {f"a {o} image in {s} style" for o in ("square", "star")
                                             for s in ("solid", "dotted")}
    assert result["config"]["max_forget_prompts"] == 4
