"""bench/lineage.py end to end at a toy size: two requests under all three strategies, JSON + plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench import lineage

torch.set_num_threads(1)

TOY = '{"max_rounds": 1, "max_forget_prompts": 4, "max_retain_prompts": 4, "saliency_batches": 2, "timestep_grid": 4}'


@pytest.mark.slow(minutes=0.75)
def test_lineage_bench_runs_three_strategies_and_chains_adapters(tmp_path: Path) -> None:
    out = tmp_path / "lineage.json"
    work = tmp_path / "work"
    rc = lineage.main(["--steps", "2", "--order", "circle,striped,square", "--spare-steps", "3", "--sample-steps",
                       "1", "--eval-seeds", "1", "--spare-params", TOY, "--out", str(out), "--work", str(work)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["order"] == ["circle", "striped"]
    rows = {(r["strategy"], r["step"]): r for r in result["rows"]}
    assert set(rows) == {(s, k) for s in ("head", "merge", "joint") for k in (1, 2)}
    for (_strategy, k), row in rows.items():
        assert set(row["ua"]) == set(result["order"][:k])
        assert all(0.0 <= u <= 1.0 for u in row["ua"].values())
        assert row["objects_kept"]["rel"] is not None and row["styles_kept"]["rel"] is not None
        assert row["step_s"] >= row["erase_s"] > 0 and row["adapter_exact"] is True
        # The worker's verification read each step's kept round: a verdict and, when refused, why.
        assert isinstance(row["certified"], bool) and (row["certified"] or row["verification"])
        assert set(row["judge"]["ua"]) >= {row["target"]} and row["round_history"]
    # head: the second erasure trained on the fused first; its cumulative adapter on v1 is that fused chain.
    assert rows[("head", 2)]["cumulative_vs_fused_max_weight_diff"] < 1e-5
    first = lineage.adapter_rank(json.loads((work / "head/step01/report.json").read_text()))
    second = lineage.adapter_rank(json.loads((work / "head/step02/report.json").read_text()))
    assert rows[("head", 2)]["cumulative_rank"] == first + second
    assert rows[("merge", 2)]["cumulative_adapter_bytes"] > rows[("merge", 1)]["cumulative_adapter_bytes"]
    # joint: one two-concept request from v1, each concept with its own surrogate.
    assert rows[("joint", 2)]["surrogates"] == {"circle": "square", "striped": "dotted"}
    assert set(result["summary"]) == {"head", "merge", "joint"}
    assert all(s["certified"] == sum(rows[(n, k)]["certified"] for k in (1, 2)) for n, s in result["summary"].items())
    with Image.open(out.with_suffix(".png")) as plot:
        assert plot.width > 1000
