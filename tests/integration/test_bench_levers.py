"""bench/levers.py end to end at a toy size: a start round and two levers on the shipped testbed, JSON + plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench import levers

torch.set_num_threads(1)

TOY = ('{"steps": 2, "max_forget_prompts": 4, "max_retain_prompts": 4, "saliency_batches": 2, "timestep_grid": 4, '
       '"samples_per_prompt": 4}')


@pytest.mark.slow(minutes=0.5)
def test_levers_bench_measures_each_lever_against_the_start(tmp_path: Path) -> None:
    out = tmp_path / "levers.json"
    rc = levers.main(["--testbeds", "full", "--objects", "circle", "--styles", "", "--sample-steps", "2",
                      "--eval-seeds", "1", "--levers", "capacity,steps,contexts,capacity", "--start", TOY,
                      "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert [r["lever"] for r in result["rows"]] == ["start", "capacity", "steps"], "a lever named twice runs once"
    rows = {r["lever"]: r for r in result["rows"]}
    # contexts cannot go past 4 samples per prompt: no round for it.
    assert set(rows) == {"start", "capacity", "steps"}
    assert rows["start"]["change"] == {}
    assert rows["steps"]["change"] == {"steps": 4}
    assert rows["capacity"]["change"]["rank"] == 6
    # Twice the rank on at least as many modules: a bigger adapter than the start's.
    assert rows["capacity"]["adapter_bytes"] > rows["start"]["adapter_bytes"]
    for r in rows.values():
        assert 0.0 <= r["ua"] <= 1.0 and r["check"]["ua"].keys() == {"circle"}
        assert r["surrogate_screen"] is not None
    per = result["summary"]["testbed"]
    assert per["start"]["d_ua"] == 0.0 and per["start"]["helped"] == 0
    assert per["steps"]["d_ua"] == pytest.approx(rows["steps"]["ua"] - rows["start"]["ua"], abs=1e-4)
    assert "capacity" in levers.table(result["summary"])
    assert Image.open(out.with_suffix(".png")).size[0] > 100


def test_levers_bench_refuses_an_unknown_lever(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        levers.main(["--levers", "capacity,wings", "--out", str(tmp_path / "x.json")])
    assert exc.value.code == 2
