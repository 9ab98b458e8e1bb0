"""`conflict_projection` reaches the engine's training: the same erasure on a tiny SD1 pipeline, with and without
it, records the setting and delivers a different change (the distillation rule itself:
tests/unit/test_distill_conflict_projection.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from core.spare import ConceptSpec, ErasureSpec, SpareConfig, erase
from tests.fused_changes import fused_changes
from tests.tiny_pipelines import BUILDERS

torch.set_num_threads(1)

FAST = dict(sample_steps=3, max_forget_prompts=4, max_retain_prompts=4, saliency_batches=2, timestep_grid=4,
            grid_seeds=1, batch_size=2, steps=12, lr=2e-2)


def test_the_projected_erasure_is_recorded_and_differs(tmp_path: Path) -> None:
    pipe = BUILDERS["sd1"]()
    spec = ErasureSpec(concepts=[ConceptSpec(target="circle", surrogate="square")], retain=["a square", "a star"])
    changes, configs = {}, {}
    for projected in (False, True):
        out = tmp_path / str(projected)
        erase(pipe, spec, SpareConfig(conflict_projection=projected, **FAST), out_dir=out)
        configs[projected] = json.loads((out / "report.json").read_text())["config"]
        changes[projected] = fused_changes(pipe.unet, out)
    assert configs[True]["conflict_projection"] is True and configs[False]["conflict_projection"] is False
    assert changes[True].keys() == changes[False].keys(), "the same modules: saliency runs before training"
    assert all(change.abs().sum() > 0 for change in changes[True].values())
    assert any(not torch.allclose(changes[True][m], changes[False][m]) for m in changes[True])
