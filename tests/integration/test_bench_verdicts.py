"""bench/verdicts.py end to end at a toy size: one erasure on the shipped testbed verified both ways, JSON + plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench import verdicts

torch.set_num_threads(1)

TOY = '{"max_rounds": 1, "max_forget_prompts": 4, "max_retain_prompts": 4, "saliency_batches": 2, "timestep_grid": 4}'


@pytest.mark.slow(minutes=0.5)
def test_verdicts_bench_verifies_one_erasure_both_ways(tmp_path: Path, real_verification: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import get_settings

    # The service's thresholds, a small judge: 4 images per verdict, more while uncertain up to 64 in all.
    monkeypatch.setenv("LETHE_JUDGE_FORGET_IMAGES", "4")
    monkeypatch.setenv("LETHE_JUDGE_RETAIN_IMAGES", "4")
    monkeypatch.setenv("LETHE_JUDGE_MAX_IMAGES", "64")
    monkeypatch.setenv("LETHE_JUDGE_STEPS", "4")
    monkeypatch.setenv("LETHE_SURROGATE_SCREEN_IMAGES", "0")
    get_settings.cache_clear()
    out = tmp_path / "verdicts.json"
    rc = verdicts.main(["--testbeds", "full", "--objects", "circle", "--styles", "", "--spare-steps", "3",
                        "--sample-steps", "2", "--spare-params", TOY, "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["thresholds"] == {"min_unlearning_accuracy": 0.9, "min_retention": 0.9}
    (row,) = result["rows"]
    assert row["target"] == "circle" and row["rounds"] == 1
    first, sequential = row["first_draw"], row["sequential"]
    assert first["draws"] == 1 and first["images"] == 4
    assert sequential["draws"] >= 1 and sequential["images"] >= first["images"]
    for verdict in (first, sequential):
        assert verdict["certified"] == (verdict["reason"] == "verified")
        assert set(verdict["retention"]) == {"same-kind:object", "other-kind:style"}
    # The first draw is read without thresholds: its grid always runs. The worker's verification refused the
    # round on its judge's evidence and skipped its grid (which could only have failed it further); as the round
    # the job keeps, the loop evaluated it once more with every diagnostic, which is what the row reports.
    assert first["grid"] is not None and not first["grid_skipped"]
    assert sequential["grid"] is not None and not sequential["grid_skipped"]
    # Three steps leave circle drawn: neither way certifies it.
    assert not first["certified"] and not sequential["certified"] and "ua[circle]" in sequential["reason"]
    summary = result["summary"]["testbed"]
    assert summary["certified_first_draw"] == summary["certified_sequential"] == 0
    assert Image.open(out.with_suffix(".png")).size[0] > 100
