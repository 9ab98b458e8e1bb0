"""bench/confusion.py at a toy size: the shipped testbed's base grid, one seed per cell, JSON + plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench import confusion
from core.testbed.canvas import OBJECTS, STYLES

torch.set_num_threads(1)


@pytest.mark.slow(minutes=0.3)
def test_confusion_bench_reports_each_surrogates_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "confusion.json"
    assert confusion.main(["--testbeds", "full", "--objects", "circle", "--styles", "striped", "--seeds", "1",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    matrices = result["confusion"]["testbed"]
    # Every cell of the grid is counted once per kind: each prompted object in every style, and the reverse.
    assert [sum(row) for row in matrices["object"]["matrix"]] == [len(STYLES)] * len(OBJECTS)
    assert [sum(row) for row in matrices["style"]["matrix"]] == [len(OBJECTS)] * len(STYLES)
    rows = {r["target"]: r for r in result["targets"]}
    assert set(rows) == {"circle", "striped"}
    for r in rows.values():
        names = matrices[r["kind"]]["names"]
        row = matrices[r["kind"]]["matrix"][names.index(r["surrogate"])]
        assert r["surrogate"] != r["target"] and r["cells"] == sum(row)
        assert r["judged_target"] == row[names.index(r["target"])]
        assert r["ua_ceiling"] == pytest.approx(1 - r["judged_target"] / r["cells"], abs=1e-4)
        low, high = r["share_interval"]
        assert low <= r["share"] <= high
    assert "UA ceiling" in confusion.table(result["targets"])
    assert Image.open(out.with_suffix(".png")).size[0] > 100
