"""bench/attack_budget.py end to end at a toy size: a reference row and a short SPARE row, JSON + picture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bench import attack_budget
from core.testbed import paths


@pytest.mark.slow(minutes=0.5)
def test_attack_budget_bench_writes_curves_and_a_grid(tmp_path: Path) -> None:
    out = tmp_path / "ab.json"
    rc = attack_budget.main([
        "--target", "striped", "--reference", str(paths.testbed_dir()), "--budgets", "0,1", "--seeds", "1",
        "--no-spare", "--esd-params", "", "--variant", 'short={"steps": 2, "sample_steps": 2}', "--out", str(out),
    ])
    assert rc == 0
    result = json.loads(out.read_text())
    assert [r["model"] for r in result["rows"]] == ["retrained without target", "short"]
    reference, short = result["rows"]
    # The shipped testbed still draws "striped": as a stand-in reference its UA is low and nothing is erased.
    assert reference["erase_s"] is None and reference["ua"] < 0.5
    assert short["erase_s"] > 0 and short["params"] == {"steps": 2, "sample_steps": 2}
    for row in result["rows"]:
        assert set(row["curve"]) == {"0", "1"}
        assert all(0.0 <= c["attack_success"] <= 1.0 for c in row["curve"].values())
    with Image.open(out.with_suffix(".png")) as grid:
        assert grid.width > 4 * 96 and grid.height > 2 * 96
