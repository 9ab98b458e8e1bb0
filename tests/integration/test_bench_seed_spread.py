"""bench/seed_spread.py: the mean of several runs' changes and their cosine are what they say, each run's own verdict
is read from its report, and at a toy size on the shipped testbed it scores every run and their mean (JSON + plot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench import seed_spread
from tests.toy_runs import toy_run

torch.set_num_threads(1)

OTHER_MODULE = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"


def test_the_mean_change_counts_a_module_a_run_left_alone_as_zero() -> None:
    a = {"m": torch.ones(2, 2), "n": torch.full((2, 2), 4.0)}
    b = {"m": torch.full((2, 2), 3.0)}
    mean = seed_spread.mean_change([a, b])
    assert torch.equal(mean["m"], torch.full((2, 2), 2.0))
    assert torch.equal(mean["n"], torch.full((2, 2), 2.0))


def test_cosine_of_changes_over_all_modules() -> None:
    a = {"m": torch.tensor([[1.0, 0.0]]), "n": torch.tensor([[0.0, 1.0]])}
    assert seed_spread.cosine(a, {k: 3 * v for k, v in a.items()}) == pytest.approx(1.0)
    assert seed_spread.cosine(a, {"m": -a["m"], "n": -a["n"]}) == pytest.approx(-1.0)
    assert seed_spread.cosine(a, {"m": a["m"]}) == pytest.approx(2**-0.5)
    assert seed_spread.cosine(a, {"o": torch.ones(1, 2)}) == 0.0


def test_a_round_its_check_refused_names_what_fell_short() -> None:
    metrics = {"round_check": {"thresholds": {"min_unlearning_accuracy": 0.9, "min_retention": 0.9}}}
    kept = {"refused": None, "ua": {"heart": 1.0},
            "retention": {"same-kind:object": 0.6667, "other-kind:style": 0.95}}
    assert seed_spread._refusal(kept, metrics) == "round check: retention[same-kind:object] 0.667 below the threshold"
    assert seed_spread._refusal({**kept, "refused": "verification failed: x"}, metrics) == "verification failed: x"
    report = {"config": {"seed": 4}, "metrics": metrics, "rounds": {"chosen": 1, "passed": False, "history": [kept]}}
    assert seed_spread.verdict(report, "heart")["refused"].startswith("round check: retention[same-kind:object]")


def _with_verdict(folder: Path, seed: int, certified: bool, grid_ira: float) -> Path:
    """A toy run whose report also holds what `lethe erase` records of its round and its verification grid."""
    report = json.loads((folder / "report.json").read_text())
    report.update(config={"seed": seed}, rounds={"chosen": 1, "passed": certified, "history": [
        {"refused": None if certified else f"verification failed: grid_ira_rel[circle] {grid_ira}"}]},
        metrics={"testbed": {"seeds": [0, 1]}, "summary": {"circle": {
            "ua": 1.0, "ira_rel": grid_ira, "ira_rel_interval": [grid_ira - 0.1, 1.0], "cra_rel": 1.0}}})
    (folder / "report.json").write_text(json.dumps(report))
    return folder


@pytest.mark.slow(minutes=0.5)
def test_seed_spread_scores_each_run_and_their_mean(tmp_path: Path) -> None:
    runs = [_with_verdict(toy_run(tmp_path / "a", 0.05), 0, True, 0.95),
            _with_verdict(toy_run(tmp_path / "b", 0.15), 1, False, 0.85),
            _with_verdict(toy_run(tmp_path / "c", 0.05, OTHER_MODULE), 2, True, 0.91)]
    out = tmp_path / "spread.json"
    assert seed_spread.main(["--testbed", "full", "--run", *map(str, runs), "--target", "circle",
                             "--eval-seeds", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["model"] for r in result["rows"]] == ["seed 0", "seed 1", "seed 2", "mean of 3"]
    assert [(r["seed"], r["certified"], r["verification_ira_rel"]) for r in result["rows"][:3]] == [
        (0, True, 0.95), (1, False, 0.85), (2, True, 0.91)]
    assert result["rows"][1]["refused"].startswith("verification failed")
    # a and b change one module in the same direction; c changes another one.
    assert result["cosine"] == {"0-1": pytest.approx(1.0, abs=1e-4), "0-2": 0.0, "1-2": 0.0}
    assert result["modules"] == [1, 1, 1]
    spread = result["spread"]
    unseen = [r["ira_rel"] for r in result["rows"][:3]]
    assert spread["ira_rel_min"] == round(min(unseen), 4) and spread["ira_rel_max"] == round(max(unseen), 4)
    assert spread["ua_min"] <= spread["ua_mean"] <= spread["ua_max"]
    assert spread["certified"] == 2 and spread["mean_change_ira_rel"] == result["rows"][3]["ira_rel"]
    for row in result["rows"]:
        assert 0.0 <= row["ua"] <= 1.0 and row["ira_rel"] > 0 and row["cra_rel"] > 0
    assert Image.open(out.with_suffix(".png")).size[0] > 100


def test_one_run_is_refused_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        seed_spread.main(["--testbed", "full", "--run", str(tmp_path), "--target", "circle"])
    assert exc.value.code == 2
    assert "two run folders or more" in capsys.readouterr().err
