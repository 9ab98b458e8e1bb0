"""Erase until verified, for real: `lethe erase` on the shipped testbed with the service's verification
minimums. A deliberately short first round (3 steps) falls short on the judge's held-out check, so the loop
escalates (the forget target repelled from the concept) and records both rounds; the kept round is the better one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from core.cli.app import app
from core.testbed.paths import SHIPPED

pytestmark = pytest.mark.slow(minutes=0.6)
torch.set_num_threads(1)


def test_a_short_round_escalates_for_real(tmp_path: Path, real_verification: None) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["erase", "--model", str(SHIPPED), "--concept", "triangle", "--steps", "3",
                                   "--max-rounds", "2", "--device", "cpu", "--eval-seeds", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    rounds = report["rounds"]
    first, second = rounds["history"]
    assert first["levers"] == [] and first["ua"]["triangle"] < 0.9, "3 steps do not erase the triangle"
    assert second["levers"] == ["repel"] and second["changed"] == {"forget_repel": 1.0}
    assert all(r["seconds"] > 0 and r["retention"] for r in rounds["history"])
    def score(r: dict) -> tuple[bool, float]:
        return r["retention_ok"], r["ua"]["triangle"]

    best = max(score(r) for r in rounds["history"])
    assert score(rounds["history"][rounds["chosen"] - 1]) == best, "the best round is kept (a tie: either)"
    expected_repel = 1.0 if rounds["chosen"] == 2 else 0.0
    assert report["config"]["forget_repel"] == expected_repel, "the kept round's files and report are delivered"
    assert "round 1 (defaults" in res.output and "round 2 (repel" in res.output
    assert all(r["timings_s"]["check"] > 0 for r in rounds["history"]), "every round ran its check"
    assert res.output.count(" s, evaluation ") == 2, "each round's line splits its seconds"
    assert (out / "adapter" / "pytorch_lora_weights.safetensors").is_file() and not (out / ".rounds").exists()
    # A round's verification draws its grid diagnostics only on judge evidence that passes; the kept round of a
    # job is reported with all of them whatever its judge said (drawn from its saved weights where skipped).
    assert report["metrics"].get("diagnostics_skipped") is None and report["metrics"]["summary"]["triangle"]
    assert "grid diagnostics not drawn" not in res.output
    assert any(line.startswith("triangle: UA") for line in res.output.splitlines()), "(the judge's are indented)"
