"""A toy `lethe erase` output folder on the shipped testbed, for the benchmarks that take a run apart."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from core.spare.loading import pipeline_dir
from core.testbed.loading import load_pipeline
from core.testbed.paths import SHIPPED

TEXT_SIDE_MODULE = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v"


def toy_run(folder: Path, norm: float, module: str = TEXT_SIDE_MODULE) -> Path:
    """`folder` holding fused/ (the shipped testbed with a rank-1 change of Frobenius norm `norm` to `module`)
    and the report.json naming that module, as a run folder of `lethe erase` does."""
    pipe = load_pipeline(pipeline_dir(SHIPPED))
    weight = dict(pipe.unet.named_modules())[module].weight
    generator = torch.Generator().manual_seed(0)
    low_rank = torch.randn(weight.shape[0], 1, generator=generator) @ torch.randn(1, weight.shape[1],
                                                                                   generator=generator)
    with torch.no_grad():
        weight.add_((norm * low_rank / low_rank.norm()).to(weight.dtype))
    pipe.save_pretrained(str(folder / "fused"))
    (folder / "report.json").write_text(json.dumps({"adapter": {"target_modules": [module]}}))
    return folder
