"""bench/surrogate_gap.py on the development testbed: every other object a candidate, nearest first, beside the
rounds an --against file holds; Spearman's rho; JSON + chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench import surrogate_gap

torch.set_num_threads(1)


def test_spearman_ranks_ties_and_refuses_what_it_cannot_rank() -> None:
    assert surrogate_gap.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert surrogate_gap.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert surrogate_gap.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)
    assert surrogate_gap.spearman([1, 2], [2, 1]) is None
    assert surrogate_gap.spearman([1, 2, 3], [5, 5, 5]) is None


def test_gaps_beside_the_rounds_toward_each_candidate(tmp_path: Path) -> None:
    against = tmp_path / "rounds.json"
    rounds = {"square": 0.9, "star": 0.8, "cross": 0.7}  # IRA % of base of a round toward each (made up)
    against.write_text(json.dumps({"rows": [
        {"target": "heart", "surrogate": s, "ua": 1.0, "ira_rel": v, "cra_rel": 1.0} for s, v in rounds.items()]}))
    out = tmp_path / "gap.json"
    assert surrogate_gap.main(["--testbed", "dev", "--objects", "heart", "--styles", "", "--prompts", "2",
                               "--against", str(against), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["target"] for r in rows] == ["heart"] * 5 and "heart" not in {r["surrogate"] for r in rows}
    gaps = [r["gap"] for r in rows]
    assert gaps == sorted(gaps) and all(g > 0 for g in gaps), "nearest first"
    assert {r["surrogate"]: r["ira_rel"] for r in rows if r["ira_rel"] is not None} == rounds
    scored = [r for r in rows if r["ira_rel"] is not None]
    expected = surrogate_gap.spearman([r["gap"] for r in scored], [r["ira_rel"] for r in scored])
    assert result["spearman_gap_ira"]["heart"] == pytest.approx(expected)
    with Image.open(out.with_suffix(".png")) as img:
        assert img.width >= 480
