"""bench/retention_floor.py at a toy size: a run folder whose fused UNet differs from the shipped testbed's in one
module, scored beside one random change of that module's rank and norm; JSON + plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench import retention_floor
from tests.toy_runs import toy_run

torch.set_num_threads(1)

def test_a_random_change_keeps_rank_and_norm() -> None:
    generator = torch.Generator().manual_seed(1)
    delta = torch.randn(12, 2, generator=generator) @ torch.randn(2, 20, generator=generator)
    random = retention_floor._random_like(delta, generator)
    assert random.shape == delta.shape
    assert int(torch.linalg.matrix_rank(random)) == 2
    assert float(random.norm()) == pytest.approx(float(delta.norm()), rel=1e-5)
    assert not torch.allclose(random, delta)


@pytest.mark.slow(minutes=0.5)
def test_retention_floor_scores_the_erasure_beside_random_changes(tmp_path: Path) -> None:
    run = toy_run(tmp_path / "run", 0.05)
    out = tmp_path / "floor.json"
    assert retention_floor.main(["--testbed", "full", "--run", str(run), "--target", "circle", "--draws", "1",
                                 "--eval-seeds", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["model"] for r in result["rows"]] == ["erasure", "random 1"]
    assert result["modules"] == 1 and result["delta_norm"] == pytest.approx(0.05, rel=0.05)
    for row in result["rows"]:
        assert 0.0 <= row["ua"] <= 1.0 and row["ira_rel"] > 0 and row["cra_rel"] > 0
    assert result["random_mean"]["ira_rel"] == result["rows"][1]["ira_rel"]
    assert Image.open(out.with_suffix(".png")).size[0] > 100
