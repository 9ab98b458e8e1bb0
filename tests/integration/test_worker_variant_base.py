"""A registered model whose folder holds only fp16-variant weights: the worker's erasure loads it and names the
variant in what it delivers (the adapter's metadata and the model card's loading snippet), as `lethe erase` does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.integration.worker_support import probe_job, seed_model, seed_request, seed_tenant, use_database
from tests.tiny_pipelines import tiny_sd1

pytestmark = pytest.mark.slow(minutes=0.2)

SPY = """
import re
from safetensors import safe_open
def spy(pipeline, spec, config, **kw):
    result = real(pipeline, spec, config, **kw)
    with safe_open(str(result.files["adapter/lora_kohya.safetensors"]), "pt") as fh:
        seen["metadata_variant"] = fh.metadata().get("lethe.base_variant")
    card = (result.out_dir / "README.md").read_text()
    seen["snippet"] = re.findall(r"```python\\n(.*?)```", card, re.S)[1]
    seen["unet_dtype"] = str(pipeline.unet.dtype)
    return result
"""


def test_the_worker_names_a_variant_only_base_in_the_adapter_and_the_card(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "fp16-base"
    tiny_sd1().to(torch.float16).save_pretrained(folder, variant="fp16")
    assert not list(folder.glob("unet/diffusion_pytorch_model.safetensors")), "variant files only"
    use_database(monkeypatch, pg_url)
    tenant = seed_tenant()
    model = seed_model(tenant, folder, fingerprint="fp-variant")
    params = {"steps": 3, "sample_steps": 2, "grid_seeds": 1, "saliency_batches": 1, "timestep_grid": 2,
              "max_rounds": 1}
    _, job_id = seed_request(tenant, model, params=params)
    result = probe_job(job_id, SPY)
    assert result["outcome"] in ("succeeded", "failed")  # a 3-step erasure of a tiny model may not verify
    assert result["unet_dtype"] == "torch.float32", "loaded upcast for the CPU"
    assert result["metadata_variant"] == "fp16"
    assert 'variant="fp16"' in result["snippet"] and "dtype=torch.float32" in result["snippet"]
