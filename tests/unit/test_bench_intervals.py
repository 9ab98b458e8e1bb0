"""bench/erasure.py says how many grid images stand behind each number, and how far they pin it down."""

from __future__ import annotations

import pytest

from bench.erasure import grid_intervals
from core.evaluation.evidence import wilson
from core.testbed.canvas import OBJECTS, STYLES


def test_an_object_row_counts_its_cells_and_bounds_each_share() -> None:
    # An object's own cells: every style, per seed; the rest of the grid: every other cell.
    forget, rest = 2 * len(STYLES), 2 * len(OBJECTS) * len(STYLES) - 2 * len(STYLES)
    row = {"ua": 1.0, "ira": 26 / rest, "ira_rel": (26 / rest) / (31 / rest), "cra": 0.88, "cra_rel": None}
    out = grid_intervals(row, "object", 2)
    assert out["images"] == {"forget": forget, "rest": rest}
    assert out["ua_interval"] == list(wilson(forget, forget)) and out["ua_interval"][1] == 1.0
    low, high = out["ira_rel_interval"]
    assert low == pytest.approx(wilson(26, rest)[0] / (31 / rest), abs=1e-3)
    assert low < row["ira_rel"] < high
    assert out["cra_rel_interval"] is None, "no base accuracy: nothing to be relative to"


def test_a_style_row_is_counted_over_the_objects() -> None:
    out = grid_intervals({"ua": 10 / 12, "ira": 0.5, "ira_rel": 1.0, "cra": 0.5, "cra_rel": 1.0}, "style", 2)
    assert out["images"]["forget"] == 2 * len(OBJECTS)
    assert out["ua_interval"][0] < 10 / 12 < out["ua_interval"][1] < 1.0
    # More seeds, the same shares: a narrower interval.
    wide, narrow = out["ira_rel_interval"], grid_intervals(
        {"ua": 10 / 12, "ira": 0.5, "ira_rel": 1.0, "cra": 0.5, "cra_rel": 1.0}, "style", 8)["ira_rel_interval"]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
