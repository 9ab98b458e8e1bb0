"""bench/tangle_retention.py: the screen's tangle of each candidate joined with one round toward it, banded by the
screen's rule, summarised per band; JSON + chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench import tangle_retention


def _tried(surrogate: str, tangled: float, confused: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"surrogate": surrogate, "confused": confused, "images": 8, "tangled": tangled,
            "tangled_with": "square", **extra}


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    screens_a, screens_b, against = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "rounds.json"
    screens_a.write_text(json.dumps({"rows": [
        {"testbed": "tb", "surrogate_screen": [{"concept": "heart", "tried": [
            _tried("circle", 0.5), _tried("star", 0.1875), _tried("cross", 0.0, confused=0.5)]}]},
        # Another model's screen of the same pair does not count.
        {"testbed": "other", "surrogate_screen": [{"concept": "heart", "tried": [_tried("triangle", 0.0)]}]},
    ]}))
    screens_b.write_text(json.dumps({"rows": [
        {"testbed": "tb", "surrogate_screen": [{"concept": "heart", "tried": [
            _tried("triangle", 0.0625), _tried("square", 0.25, tangle_images=16)]}]},
        {"testbed": "tb", "surrogate_screen": None},
    ]}))
    rounds = {"circle": (0.80, 0.98), "star": (1.0, 0.96), "cross": (1.0, 1.0), "triangle": (0.97, 0.99),
              "square": (0.90, 0.85)}
    against.write_text(json.dumps({"rows": [
        {"testbed": "tb", "target": "heart", "surrogate": s, "ua": 1.0, "ira_rel": i, "cra_rel": c}
        for s, (i, c) in rounds.items()] + [
        {"testbed": "tb", "target": "heart", "surrogate": "outline", "ua": 1.0, "ira_rel": 1.0, "cra_rel": 1.0}]}))
    return screens_a, screens_b, against


def test_band_follows_the_screens_rule() -> None:
    assert tangle_retention.band(_tried("c", 0.0625), 0.10) == "within the allowance"
    assert tangle_retention.band(_tried("c", 0.1875), 0.10) == "above it, within noise"  # 3 of 16
    assert tangle_retention.band(_tried("c", 0.25), 0.10) == "beyond noise"  # 4 of 16: Wilson lower 0.102
    assert tangle_retention.band(_tried("c", 0.125, tangle_images=64), 0.10) == "above it, within noise"
    assert tangle_retention.band(_tried("c", 0.25, tangle_images=64), 0.10) == "beyond noise"


def test_joins_bands_and_summarises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    screens_a, screens_b, against = _files(tmp_path)
    out = tmp_path / "tangle.json"
    assert tangle_retention.main(["--testbed", "tb", "--against", str(against),
                                  "--screens", f"{screens_a},{screens_b}", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    got = {r["surrogate"]: (r["band"], r["retention"]) for r in result["rows"]}
    # cross is confused with heart (left out); outline was never screened (left out).
    assert got == {"triangle": ("within the allowance", 0.97), "star": ("above it, within noise", 0.96),
                   "square": ("beyond noise", 0.85), "circle": ("beyond noise", 0.80)}
    assert [r["surrogate"] for r in result["rows"]] == ["triangle", "star", "square", "circle"]
    assert result["bands"]["beyond noise"] == {"n": 2, "mean": 0.825, "min": 0.8, "max": 0.85}
    assert result["bands"]["within the allowance"]["n"] == 1
    assert Image.open(out.with_suffix(".png")).size[0] > 0
    printed = capsys.readouterr().out
    assert "beyond noise" in printed and "82.5" in printed


def test_nothing_to_join_is_an_error(tmp_path: Path) -> None:
    screens_a, _, against = _files(tmp_path)
    with pytest.raises(SystemExit, match="no candidate of nowhere"):
        tangle_retention.main(["--testbed", "nowhere", "--against", str(against), "--screens", str(screens_a),
                               "--out", str(tmp_path / "x.json")])
