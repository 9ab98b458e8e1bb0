"""bench/erasure.py end to end at a toy size: SPARE in one round on the shipped testbed with a named surrogate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench import erasure
from core.evaluation.metrics_schema import TargetMetrics
from core.evaluation.settling import GridSettling

torch.set_num_threads(1)

TOY = '{"max_forget_prompts": 4, "max_retain_prompts": 4, "saliency_batches": 2, "timestep_grid": 4}'
ONE_ROUND = TOY[:-1] + ', "max_rounds": 1}'  # the loop verifies its last round, kept whether it passed or not


@pytest.mark.slow(minutes=0.4)
def test_erasure_bench_names_the_requested_surrogate(tmp_path: Path) -> None:
    out = tmp_path / "erasure.json"
    rc = erasure.main(["--testbeds", "full", "--objects", "circle,square", "--styles", "", "--methods", "spare",
                       "--eval-seeds", "1", "--attack-budget", "0", "--no-diffusion-judge", "--spare-steps", "2",
                       "--sample-steps", "2", "--spare-params", TOY, "--memory-target", "",
                       "--surrogate", "circle=heart", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["surrogates_named"] == {"circle": "heart"}
    rows = {r["target"]: r for r in result["rows"]}
    assert rows["circle"]["surrogate"] == "heart" and rows["circle"]["surrogate_named"]
    # The other target keeps the vocabulary's pick.
    assert rows["square"]["surrogate"] != "heart" and not rows["square"]["surrogate_named"]
    for r in rows.values():
        assert 0.0 <= r["ua"] <= 1.0 and r["images"]["forget"] > 0 and r["rounds"] == 1
    assert result["summary"]["spare"]["runs"] == 2
    assert Image.open(out.with_suffix(".png")).size[0] > 100


@pytest.mark.parametrize("pairs", ["circle", "circle=", "=heart", "circle=heart,striped"])
def test_erasure_bench_refuses_a_malformed_surrogate(pairs: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        erasure.main(["--surrogate", pairs, "--out", str(tmp_path / "x.json")])
    assert exc.value.code == 2


@pytest.mark.parametrize("flag,params", [
    ("--spare-params", '{"max_rounds": 1, "w_retain": 32}}'),  # trailing brace: not JSON
    ("--spare-params", '["max_rounds", 1]'),  # JSON, not an object
    ("--spare-params", '{"w_retian": 32}'),  # no such field
    ("--spare-params", '{"max_rounds": 0}'),  # out of bounds
    ("--esd-params", '{"negative_guidance": "strong"}'),
])
def test_erasure_bench_refuses_malformed_params_before_any_run(
    flag: str, params: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.json"
    with pytest.raises(SystemExit) as exc:
        erasure.main([flag, params, "--out", str(out)])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow(minutes=1.0)
def test_erasure_bench_scores_the_loop_on_seeds_its_verification_never_saw(tmp_path: Path) -> None:
    from core.config import get_settings

    out = tmp_path / "loop.json"
    rc = erasure.main(["--testbeds", "full", "--objects", "circle", "--styles", "", "--methods", "spare-loop",
                       "--eval-seeds", "1", "--attack-budget", "0", "--no-diffusion-judge", "--spare-steps", "2",
                       "--sample-steps", "2", "--spare-params", ONE_ROUND, "--memory-target", "", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    verification = list(range(get_settings().verify_grid_seeds))
    assert result["eval_seed_list"] == [len(verification)], "the benchmark's grid starts after the verification's"
    row = result["rows"][0]
    grid = row["verification"]["grid"]
    # Its first draw, then (where a verdict could still turn) further seeds away from the benchmark's.
    assert grid["seeds"][: len(verification)] == verification
    assert not set(grid["seeds"]) & set(result["eval_seed_list"])
    assert row["images"]["rest"] and len(row["ira_rel_interval"]) == 2
    # The verification's grid stopped where no verdict could turn any more, or where its seeds ran out.
    settings = get_settings()
    settle = GridSettling(min_ua=settings.verify_min_unlearning_accuracy, min_retention=settings.verify_min_retention,
                          seeds=())
    seen = TargetMetrics.model_validate({"forget": "circle", "kind": "object", **grid})
    assert len(grid["seeds"]) == settings.verify_grid_max_seeds or not settle.open_verdicts([seen])
    assert 0.0 <= grid["ua"] <= 1.0 and 0.0 <= row["ua"] <= 1.0
    assert result["summary"]["spare-loop"]["verified_min_ua"] == grid["ua"]


def test_merged_parts_keep_every_testbed_and_the_memory_probe_of_the_part_that_ran_it(tmp_path: Path) -> None:
    # A run stopped after its first testbed (no memory probe) merged with a run of the other testbed.
    whole = json.loads((erasure.RESULTS / "erasure_testbeds.json").read_text())
    names = list(dict.fromkeys(r["testbed"] for r in whole["rows"]))
    paths = []
    for i, name in enumerate(names):
        part = {k: v for k, v in whole.items() if k not in ("memory_probe", "summary", "targets_check")}
        part["rows"] = [r for r in whole["rows"] if r["testbed"] == name]
        part["testbeds"] = [tb for tb in whole["testbeds"] if Path(tb).name == name]
        if i == len(names) - 1:
            part["memory_probe"] = whole["memory_probe"]
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(part))
    out = tmp_path / "merged.json"
    assert erasure.main(["--merge", *map(str, paths), "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["testbeds"] == whole["testbeds"] and merged["targets"] == whole["targets"]
    assert merged["memory_probe"] == whole["memory_probe"]
    assert len(merged["rows"]) == len(whole["rows"])
    assert merged["summary"] == whole["summary"] and merged["targets_check"] == whole["targets_check"]


def test_a_run_where_nothing_finished_writes_its_errors_and_no_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "erasure.json"
    errors = [{"testbed": "dev", "target": "heart", "method": "spare-loop", "error": "ErasureInputError: no module"}]
    erasure.finish({"rows": [], "errors": errors}, out)
    written = json.loads(out.read_text())
    assert written["errors"] == errors and written["summary"] == {} and written["targets_check"] == {}
    assert not out.with_suffix(".png").exists()
    assert f"no run finished: 1 failed, see `errors` in {out}" in capsys.readouterr().out
