"""SPARE on the testbed (the trained mini-canvas pipeline and its classifier).

Uses the testbed core.testbed ships (or LETHE_TEST_TESTBED, e.g. a work-in-progress checkpoint).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from core.cli.app import app
from core.evaluation.sampling import generate
from core.spare import testbed_eval
from core.spare.conditioning import PromptEncoder
from core.spare.saliency import candidate_modules, compute_saliency
from core.spare.samples import generate_latents
from core.spare.specs import SpareConfig
from core.testbed import paths as testbed_paths
from core.testbed.canvas import STYLES, prompt
from core.testbed.loading import load_pipeline

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def testbed() -> Path:
    path = Path(os.environ.get("LETHE_TEST_TESTBED") or testbed_paths.testbed_dir())
    assert (path / "manifest.json").is_file(), f"no testbed at {path}"
    return path


def test_saliency_selects_modules_whose_ablation_changes_the_object_most(testbed: Path) -> None:
    torch.set_flush_denormal(True)
    pipe = load_pipeline(testbed)
    concept = testbed_eval.testbed_concept("circle")
    prompts = concept.prompts[:10]
    latents = generate_latents(pipe, prompts, seed=0, steps=10, guidance=5.0, per_prompt=1)
    cond = PromptEncoder(pipe, "sd1", torch.device("cpu")).encode(prompts)
    cfg = SpareConfig(saliency_batches=4, batch_size=8)
    sal = compute_saliency(pipe.unet, pipe.scheduler, latents, cond, cfg, dtype=None,
                           generator=torch.Generator().manual_seed(0))
    pool = list(candidate_modules(pipe.unet, cfg.saliency_pool))
    k = len(sal.selected)
    assert 0 < k < len(pool)

    eval_prompts = [prompt("circle", s) for s in STYLES]
    seeds = [0, 1] * len(eval_prompts)
    eval_prompts = [p for p in eval_prompts for _ in range(2)]
    base = generate(pipe, eval_prompts, seeds, steps=10).astype(np.float32)

    def change_when_ablated(names: list[str]) -> float:
        modules = dict(pipe.unet.named_modules())
        saved = {n: modules[n].weight.detach().clone() for n in names}
        with torch.no_grad():
            for n in names:
                modules[n].weight.mul_(0.5)  # weaken rather than delete: keeps the network in range
        try:
            out = generate(pipe, eval_prompts, seeds, steps=10).astype(np.float32)
        finally:
            with torch.no_grad():
                for n in names:
                    modules[n].weight.copy_(saved[n])
        return float(np.abs(out - base).mean())

    selected_change = change_when_ablated(sal.selected)
    rng = random.Random(0)
    others = [n for n in pool if n not in sal.selected]
    random_changes = [change_when_ablated(rng.sample(others, min(k, len(others)))) for _ in range(3)]
    assert selected_change > np.mean(random_changes), (selected_change, random_changes)


@pytest.mark.slow(minutes=0.35)
def test_short_spare_run_on_testbed_moves_ua_and_keeps_retention(testbed: Path, tmp_path: Path) -> None:
    """Through `lethe erase`: the report carries the evaluator's metrics."""
    out = tmp_path / "out"
    params = json.dumps({"max_retain_prompts": 16, "grid_seeds": 1, "sample_steps": 10})
    res = CliRunner().invoke(app, ["erase", "--model", str(testbed), "--concept", "triangle", "--steps", "120",
                                   "--device", "cpu", "--params", params, "--eval-seeds", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    row = report["metrics"]["summary"]["triangle"]
    assert row["ua"] >= row["base_ua"] + 0.3, row
    assert row["ira_rel"] >= 0.85 and row["cra_rel"] >= 0.85, row
    assert "testbed" in report["metrics"] and report["metrics"]["testbed"]["fid_analogue"] >= 0
