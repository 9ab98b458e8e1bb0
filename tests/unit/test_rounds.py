"""Erase until verified: the loop's decisions (core.spare.rounds) with a scripted engine and check.

The engine here writes a file and calls the evaluator like the real one; the check returns scripted verdicts,
so each test pins one decision: stop on pass, escalate a short round, roll back a round that broke retention,
stop when the budget is spent, go on when the verification refuses a round its check passed. The real loop on
the testbed runs in tests/integration/test_rounds_testbed.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from core.erasure.judging import acceptance
from core.erasure.verification import Thresholds
from core.spare.report import EngineMetrics, ErasureResult, SurrogateScreen
from core.spare.round_spec import in_force
from core.spare.rounds import RoundCheck, check_from_evidence, erase_until_verified
from core.spare.specs import ConceptSpec, ErasureSpec, EsdConfig, SpareConfig
from tests.unit.reports import evidence, report

SPEC = ErasureSpec(concepts=[ConceptSpec(target="circle", surrogate="square")])


def half_anchored(**params: Any) -> SpareConfig:
    """A first round whose forget term is anchored on the surrogate's generations half the time, so that the
    anchor lever still has a step to take (the default anchors it fully from the first round)."""
    return SpareConfig(forget_anchor="both", **params)


class Script:
    """A fake single-round engine and a check that answers from a list of (ua, retention)."""

    def __init__(self, verdicts: list[tuple[float, float]], min_ua: float = 0.9, min_retention: float = 0.9,
                 lost_as: str | list[str] = "circle") -> None:
        self.verdicts = verdicts
        self.min_ua, self.min_retention, self.lost_as = min_ua, min_retention, lost_as
        self.configs: list[SpareConfig | EsdConfig] = []
        self.specs: list[ErasureSpec] = []
        self.full_evaluations: list[int] = []
        self.stages: list[str] = []
        self.grids: list[bool] = []

    def erase(self, pipeline: Any, spec: ErasureSpec, config: Any, *, out_dir: Path, progress: Any = None,
              should_stop: Any = None, evaluator: Any = None, grid_wanted: Any = None, **_: Any) -> ErasureResult:
        self.configs.append(config)
        self.specs.append(spec)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "adapter.bin").write_text(f"round {len(self.configs)} rank {getattr(config, 'rank', None)}")
        if progress:
            progress("distill", 0.5)
        made = report(config, evaluator("erased", "base"))
        self.grids.append(grid_wanted(made.metrics))  # asked, as the engine does, once the evaluator has run
        (out_dir / "report.json").write_text(json.dumps(made.dump()))
        return ErasureResult(out_dir=out_dir, report=made, files={})

    def check(self, erased: Any, base: Any) -> RoundCheck:
        ua, retention = self.verdicts[len(self.configs) - 1]
        lost_as = self.lost_as if isinstance(self.lost_as, str) else self.lost_as[len(self.configs) - 1]
        shown = evidence(ua, retention, lost_as=lost_as).model_dump(mode="json")
        return check_from_evidence(shown, self.min_ua, self.min_retention)

    def evaluator(self, erased: Any, base: Any, complete: bool = False, judged: Any = None) -> dict[str, Any]:
        self.full_evaluations.append(len(self.configs))
        return {"judge": evidence(judge="full")}

    def run(self, tmp_path: Path, config: SpareConfig | EsdConfig) -> ErasureResult:
        return erase_until_verified(None, SPEC, config, out_dir=tmp_path / "out", check=self.check,
                                    evaluator=self.evaluator, erase_fn=self.erase,
                                    progress=lambda s, f: self.stages.append(s))


def test_the_loop_stops_on_the_first_round_that_passes(tmp_path: Path) -> None:
    script = Script([(0.95, 1.0), (1.0, 1.0)])
    result = script.run(tmp_path, SpareConfig(max_rounds=3))
    assert len(script.configs) == 1 and script.full_evaluations == [1]
    history = result.report.dump()["rounds"]["history"]
    assert [r["outcome"] for r in history] == ["kept"] and result.report.dump()["rounds"]["passed"] is True
    assert result.metrics.judge.judge["name"] == "full" and result.report.rounds.chosen == 1
    assert script.stages == ["round 1/3: distill"]
    assert (tmp_path / "out" / "adapter.bin").read_text().startswith("round 1")
    assert not (tmp_path / "out" / ".rounds").exists()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["rounds"]["chosen"] == 1


def test_each_round_reports_where_its_seconds_went(tmp_path: Path) -> None:
    # A short round (check only) then a passing one (check, then the full evaluation): the split is measured
    # around the calls, so a slow check or evaluation shows in its own column.
    script = Script([(0.5, 1.0), (1.0, 1.0)])
    check, full = script.check, script.evaluator

    def slow_check(erased: Any, base: Any) -> RoundCheck:
        time.sleep(0.05)
        return check(erased, base)

    def slow_evaluator(erased: Any, base: Any) -> dict[str, Any]:
        time.sleep(0.1)
        return full(erased, base)

    result = erase_until_verified(None, SPEC, SpareConfig(max_rounds=2), out_dir=tmp_path / "out",
                                  check=slow_check, evaluator=slow_evaluator, erase_fn=script.erase)
    short, kept = result.report.dump()["rounds"]["history"]
    assert short["timings_s"]["check"] >= 0.05 and short["timings_s"]["evaluate"] == 0.0
    assert kept["timings_s"]["check"] >= 0.05 and kept["timings_s"]["evaluate"] >= 0.1
    for row in (short, kept):
        assert sum(row["timings_s"].values()) == pytest.approx(row["seconds"], abs=0.01)


def test_only_a_round_that_passes_its_check_or_is_the_last_wants_its_grid(tmp_path: Path) -> None:
    script = Script([(0.5, 1.0), (0.5, 0.5), (1.0, 1.0)])
    script.run(tmp_path / "a", SpareConfig(max_rounds=3))
    assert script.grids == [False, False, True]
    last = Script([(0.5, 1.0), (0.6, 1.0)])
    last.run(tmp_path / "b", SpareConfig(max_rounds=2))
    assert last.grids == [False, True]


def test_a_short_round_escalates_repulsion_then_capacity(tmp_path: Path) -> None:
    script = Script([(0.5, 1.0), (0.8, 1.0), (0.95, 0.97)])
    result = script.run(tmp_path, half_anchored(max_rounds=4))
    first, second, third = script.configs
    assert (first.forget_repel, second.forget_repel, third.forget_repel) == (0.0, 1.0, 1.0)
    assert second.rank == first.rank and (third.rank, third.max_modules) == (first.rank * 2, first.max_modules * 2)
    assert {c.forget_anchor for c in script.configs} == {"both"}
    history = result.report.dump()["rounds"]["history"]
    assert [r["levers"] for r in history] == [[], ["repel"], ["capacity"]]
    assert [r["outcome"] for r in history] == ["short", "short", "kept"]
    assert [r["ua"]["circle"] for r in history] == [0.5, 0.8, 0.95]
    assert all(r["seconds"] >= 0 for r in history)
    assert script.full_evaluations == [3], "only the passing round is fully evaluated"
    assert (tmp_path / "out" / "adapter.bin").read_text().startswith("round 3")
    assert "round 2/4: distill" in script.stages


def test_a_fourth_round_anchors_the_forget_term_on_the_surrogate(tmp_path: Path) -> None:
    script = Script([(0.5, 1.0), (0.6, 1.0), (0.7, 1.0), (0.95, 1.0)])
    result = script.run(tmp_path, half_anchored(max_rounds=4))
    assert [c.forget_anchor for c in script.configs] == ["both", "both", "both", "surrogate"]
    history = result.report.dump()["rounds"]["history"]
    assert [r["levers"] for r in history] == [[], ["repel"], ["capacity"], ["anchor"]]
    assert history[3]["changed"] == {"forget_anchor": "surrogate"}
    last = script.configs[3]
    assert last.forget_repel == 1.0 and last.rank == 2 * script.configs[0].rank, "earlier levers stay in force"


def test_placement_widens_the_pool_to_self_attention_after_the_other_adapter_levers(tmp_path: Path) -> None:
    script = Script([(0.5, 1.0), (0.6, 1.0), (0.7, 1.0), (0.72, 1.0), (0.75, 1.0), (0.8, 1.0), (0.95, 1.0)])
    result = script.run(tmp_path, half_anchored(max_rounds=7))
    pools = [c.saliency_pool for c in script.configs]
    assert pools == ["cross_attention"] * 6 + ["attention"]
    history = result.report.dump()["rounds"]["history"]
    assert [r["levers"] for r in history] == [[], ["repel"], ["capacity"], ["anchor"], ["timesteps"],
                                               ["contexts"], ["placement"]]
    assert history[6]["changed"] == {"saliency_pool": "attention"}


def test_a_pool_that_is_already_wide_skips_placement(tmp_path: Path) -> None:
    script = Script([(0.5, 1.0), (0.6, 1.0), (0.7, 1.0), (0.72, 1.0), (0.75, 1.0), (0.8, 1.0), (0.95, 1.0)])
    result = script.run(tmp_path, half_anchored(max_rounds=7, saliency_pool="attention"))
    assert {c.saliency_pool for c in script.configs} == {"attention"}
    assert [r["levers"] for r in result.report.dump()["rounds"]["history"]][6] == ["steps"]


def test_a_round_that_breaks_retention_is_rolled_back(tmp_path: Path) -> None:
    # Round 2 (repulsion) breaks retention and is still short: round 3 starts again from round 1's config, wins
    # retention back by anchoring the forget term on the surrogate, and escalates by the next lever left
    # (capacity), never repulsion again.
    script = Script([(0.5, 1.0), (0.85, 0.6), (0.92, 0.95)])
    result = script.run(tmp_path, half_anchored(max_rounds=3))
    first, second, third = script.configs
    assert second.forget_repel == 1.0
    assert third.forget_repel == 0.0, "rolled back to round 1"
    assert third.forget_anchor == "surrogate" and third.rank == 2 * first.rank and third.w_retain == first.w_retain
    history = result.report.dump()["rounds"]["history"]
    assert [r["outcome"] for r in history] == ["short", "rolled back (retention)", "kept"]
    assert [r["lost"] for r in history] == [{}, {"square": 10}, {"square": 1}], "what each round broke"
    assert history[2]["changed"] == {"forget_anchor": "surrogate", "rank": 2 * first.rank,
                                     "max_modules": 2 * first.max_modules, "saliency_fraction": 0.98}
    assert history[2]["levers"] == ["anchor", "capacity"]


def test_a_lever_applied_in_a_rollback_round_is_not_applied_again(tmp_path: Path) -> None:
    # Round 1 breaks retention and is short: round 2 = anchoring + repulsion; round 2 keeps retention but is
    # still short: round 3 escalates by the next lever, neither repulsion nor anchoring a second time.
    script = Script([(0.5, 0.5), (0.6, 1.0), (0.95, 1.0)])
    result = script.run(tmp_path, half_anchored(max_rounds=3))
    first, second, third = script.configs
    assert second.forget_repel == third.forget_repel == 1.0 and third.rank == 2 * first.rank
    assert second.forget_anchor == third.forget_anchor == "surrogate"
    assert [r["levers"] for r in result.report.dump()["rounds"]["history"]] == [[], ["anchor", "repel"], ["capacity"]]


def test_a_round_that_only_broke_retention_wins_it_back_without_escalating(tmp_path: Path) -> None:
    script = Script([(1.0, 0.5), (1.0, 0.95)])
    result = script.run(tmp_path, half_anchored(max_rounds=2))
    first, second = script.configs
    assert second.model_dump(exclude={"forget_anchor"}) == first.model_dump(exclude={"forget_anchor"})
    assert (first.forget_anchor, second.forget_anchor) == ("both", "surrogate")
    assert result.report.dump()["rounds"]["history"][1]["levers"] == ["anchor"]


def test_at_the_default_anchoring_a_short_round_escalates_repel_then_capacity(tmp_path: Path) -> None:
    # The default anchors the forget term fully from the first round: the anchor lever has no step left and is
    # passed over.
    script = Script([(0.5, 1.0), (0.6, 1.0), (0.95, 1.0)])
    result = script.run(tmp_path, SpareConfig(max_rounds=3))
    assert {c.forget_anchor for c in script.configs} == {"surrogate"}
    assert [r["levers"] for r in result.report.dump()["rounds"]["history"]] == [[], ["repel"], ["capacity"]]


def test_at_the_default_anchoring_a_rollback_weighs_the_retain_term(tmp_path: Path) -> None:
    script = Script([(1.0, 0.5), (1.0, 0.6), (1.0, 0.95)])
    result = script.run(tmp_path, SpareConfig(max_rounds=3))
    first = script.configs[0]
    assert [c.w_retain for c in script.configs] == [1.0, 2.0, 4.0]
    assert script.configs[2] == first.model_copy(update={"w_retain": 4.0}), "nothing else changes"
    assert [r["levers"] for r in result.report.dump()["rounds"]["history"]] == [[], ["retain"], ["retain"]]


def test_when_the_budget_is_spent_the_best_round_is_kept_and_not_passed(tmp_path: Path) -> None:
    script = Script([(0.7, 1.0), (0.85, 1.0), (0.3, 0.4)])
    result = script.run(tmp_path, SpareConfig(max_rounds=3))
    assert len(script.configs) == 3 and script.full_evaluations == [3], "the last round is fully evaluated"
    rounds = result.report.dump()["rounds"]
    assert rounds["passed"] is False and rounds["chosen"] == 2
    assert [r["outcome"] for r in rounds["history"]] == ["short", "kept", "rolled back (retention)"]
    # The best round's own (check) evidence is what the job is judged on: it fails verification.
    assert result.metrics.judge.concepts[0].ua == 0.85


def test_the_time_budget_stops_the_loop(tmp_path: Path) -> None:
    script = Script([(0.5, 1.0)] * 5)
    result = script.run(tmp_path, SpareConfig(max_rounds=5, time_budget_s=1e-6))
    assert len(script.configs) == 1, "no second round fits a budget already spent"
    assert result.report.dump()["rounds"]["passed"] is False
    assert result.metrics.judge.concepts[0].ua == 0.5, "judged on the best round's check evidence"


def test_a_generous_time_budget_leaves_the_rounds_to_max_rounds(tmp_path: Path) -> None:
    script = Script([(0.5, 1.0), (0.6, 1.0), (0.7, 1.0)])
    result = script.run(tmp_path, SpareConfig(max_rounds=3, time_budget_s=3600))
    assert len(script.configs) == 3 and script.full_evaluations == [3]
    assert result.report.dump()["rounds"]["chosen"] == 3 and result.report.dump()["rounds"]["time_budget_s"] == 3600


def test_esd_escalates_steps_only(tmp_path: Path) -> None:
    script = Script([(0.5, 1.0), (0.95, 1.0)])
    script.run(tmp_path, EsdConfig(max_rounds=3, steps=100))
    assert [c.steps for c in script.configs] == [100, 200]


def test_a_single_round_is_the_plain_engine(tmp_path: Path) -> None:
    script = Script([(0.5, 1.0)])
    result = script.run(tmp_path, SpareConfig())
    assert len(script.configs) == 1 and script.full_evaluations == [1]
    assert result.report.dump()["rounds"]["history"][0]["outcome"] == "kept"


def test_an_occupied_output_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(Exception, match="not empty"):
        Script([(1.0, 1.0)]).run(tmp_path, SpareConfig())


class _Unet:
    dtype, device = "float32", "cpu"

    def __init__(self, source: str = "base") -> None:
        self.source = source

    @classmethod
    def from_pretrained(cls, path: str, dtype: Any = None) -> _Unet:
        return cls(Path(path).read_text() if Path(path).is_file() else (Path(path) / "weights").read_text())

    def to(self, device: Any) -> _Unet:
        return self


class _Pipe:
    def __init__(self, unet: _Unet) -> None:
        self.unet = unet
        self.components = {"unet": unet}

    def set_progress_bar_config(self, **kw: Any) -> None:
        pass


def test_a_best_round_that_was_not_the_last_is_evaluated_from_its_saved_weights(tmp_path: Path) -> None:
    script = Script([(0.7, 1.0), (0.8, 1.0), (0.3, 0.5)])
    seen: list[str] = []

    def erase_writing_weights(pipeline: Any, spec: ErasureSpec, config: Any, **kw: Any) -> ErasureResult:
        (kw["out_dir"] / "fused" / "unet").mkdir(parents=True)
        (kw["out_dir"] / "fused" / "unet" / "weights").write_text(f"round {len(script.configs) + 1}")
        return script.erase(pipeline, spec, config, **kw)

    def evaluator(erased: Any, base: Any, complete: bool = False, judged: Any = None) -> dict[str, Any]:
        source = erased.unet.source if isinstance(erased, _Pipe) else "in place"  # the fake engine passes a name
        seen.append(source)
        return {"judge": evidence(judge=source)}

    result = erase_until_verified(_Pipe(_Unet()), SPEC, SpareConfig(max_rounds=3), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=evaluator, erase_fn=erase_writing_weights)
    assert result.report.dump()["rounds"]["chosen"] == 2
    # The last round is evaluated as it runs (erased weights in place), then the kept one from its fused/ UNet.
    assert seen == ["in place", "round 2"] and result.metrics.judge.judge["name"] == "round 2"
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["metrics"]["judge"]["judge"]["name"] == "round 2", "report.json is the typed report's dump"


def test_a_kept_round_whose_verification_skipped_its_diagnostics_gets_them_before_the_job_ends(
        tmp_path: Path) -> None:
    # Both rounds pass their check and are refused by the verification's judge, which then skips the diagnostics
    # (as core.erasure.judging.job_evaluator does). The job fails keeping round 1 (retention kept), and reports
    # its diagnostics: the loop evaluates it once more from its saved weights with complete=True, handing back
    # the judge evidence it drew for that round (`judged`) rather than having it drawn again.
    script = Script([(1.0, 1.0), (1.0, 1.0)])
    calls: list[tuple[str, bool, float | None]] = []
    verdicts = {"round 1": (0.85, 1.0), "round 2": (0.8, 0.5)}

    def erase_writing_weights(pipeline: Any, spec: ErasureSpec, config: Any, **kw: Any) -> ErasureResult:
        (kw["out_dir"] / "fused" / "unet").mkdir(parents=True)
        (kw["out_dir"] / "fused" / "unet" / "weights").write_text(f"round {len(script.configs) + 1}")
        return script.erase(pipeline, spec, config, **kw)

    def evaluator(erased: Any, base: Any, complete: bool = False, judged: Any = None) -> dict[str, Any]:
        source = erased.unet.source if isinstance(erased, _Pipe) else f"round {len(script.configs)}"
        calls.append((source, complete, judged["concepts"][0]["ua"] if judged else None))
        ua, retention = verdicts[source]
        drawn = {"judge": judged or evidence(ua, retention, images=48).model_dump(mode="json")}
        if not complete:
            return {**drawn, "diagnostics_skipped": "the judge refused"}
        return {**drawn, "summary": {"circle": {"ua": 1.0, "ira": 0.8, "cra": 0.9, "base_ua": 0.0,
                                                "ira_rel": 0.8, "cra_rel": 0.9}}}

    result = erase_until_verified(_Pipe(_Unet()), SPEC, SpareConfig(max_rounds=2), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=evaluator, erase_fn=erase_writing_weights,
                                  accept=acceptance(THRESHOLDS, ["circle"]))
    rounds = result.report.dump()["rounds"]
    assert rounds["passed"] is False and rounds["chosen"] == 1
    assert calls == [("round 1", False, None), ("round 2", False, None), ("round 1", True, 0.85)]
    metrics = result.metrics
    assert metrics.diagnostics_skipped is None and metrics.summary is not None and metrics.summary["circle"].ira == 0.8
    assert metrics.judge is not None and metrics.judge.concepts[0].ua == 0.85, "the kept round's own evidence"
    saved = json.loads((tmp_path / "out" / "report.json").read_text())["metrics"]
    assert saved["diagnostics_skipped"] is None and saved["summary"]["circle"]["ira"] == 0.8


def test_repeated_rollbacks_keep_what_the_last_one_added(tmp_path: Path) -> None:
    # Three rounds in a row break retention: each rollback keeps what the one before added (the anchoring, then
    # the retain weight) and goes further, instead of running an earlier rollback's config a second time.
    script = Script([(1.0, 0.5), (1.0, 0.6), (1.0, 0.6), (1.0, 0.95)])
    result = script.run(tmp_path, half_anchored(max_rounds=4))
    assert [(c.forget_anchor, c.w_retain) for c in script.configs] == [
        ("both", 1.0), ("surrogate", 1.0), ("surrogate", 2.0), ("surrogate", 4.0)]
    assert [r["levers"] for r in result.report.dump()["rounds"]["history"]] == [[], ["anchor"], ["retain"], ["retain"]]


def test_an_anchoring_that_erased_but_broke_retention_is_kept_and_not_applied_again_to_win_it_back(
        tmp_path: Path) -> None:
    # Round 4 escalates by anchoring and breaks retention (UA met): round 5 keeps the anchoring (round 3 without
    # it was short) and wins retention back with more retain weight, not by anchoring a second time.
    script = Script([(0.5, 1.0), (0.6, 1.0), (0.7, 1.0), (0.95, 0.5), (0.95, 0.95)])
    result = script.run(tmp_path, half_anchored(max_rounds=5))
    fourth, fifth = script.configs[3:]
    assert fourth.forget_anchor == "surrogate"
    assert fifth == fourth.model_copy(update={"w_retain": 2.0}), "round 4's config, more retain weight"
    history = result.report.dump()["rounds"]["history"]
    assert [r["levers"] for r in history] == [[], ["repel"], ["capacity"], ["anchor"], ["anchor", "retain"]]
    assert history[4]["changed"] == {"forget_anchor": "surrogate", "w_retain": 2.0}
    assert [r["outcome"] for r in history] == ["short", "short", "short", "rolled back (retention)", "kept"]


def test_a_repulsion_that_erased_but_broke_retention_is_kept_with_more_retain_weight(tmp_path: Path) -> None:
    # Round 1 is short; round 2's repulsion erases but breaks retention. Without the repulsion round 3 would be
    # round 1 again, short: it keeps the repulsion (not grown further) and doubles the retain weight.
    script = Script([(0.85, 1.0), (1.0, 0.8), (0.95, 0.95)])
    result = script.run(tmp_path, SpareConfig(max_rounds=3))
    first, second, third = script.configs
    assert second == first.model_copy(update={"forget_repel": 1.0})
    assert third == second.model_copy(update={"w_retain": 2.0})
    history = result.report.dump()["rounds"]["history"]
    assert [r["levers"] for r in history] == [[], ["repel"], ["repel", "retain"]]
    assert history[2]["changed"] == {"forget_repel": 1.0, "w_retain": 2.0}
    assert [r["outcome"] for r in history] == ["short", "rolled back (retention)", "kept"]


def test_a_kept_escalation_that_breaks_retention_again_gets_more_retain_weight_and_then_escalates_on(
        tmp_path: Path) -> None:
    # Round 3 (repulsion kept, retain weight 2) breaks retention again with UA met: round 4 keeps the repulsion at
    # retain weight 4. That round keeps retention but falls short: round 5 escalates from it by the next lever
    # (capacity), with the repulsion and the weight it won.
    script = Script([(0.85, 1.0), (1.0, 0.8), (1.0, 0.85), (0.8, 1.0), (0.95, 0.95)])
    result = script.run(tmp_path, SpareConfig(max_rounds=5))
    first, _, _, fourth, fifth = script.configs
    assert fourth == first.model_copy(update={"forget_repel": 1.0, "w_retain": 4.0})
    assert fifth == fourth.model_copy(update={"rank": 2 * first.rank, "max_modules": 2 * first.max_modules,
                                              "saliency_fraction": 0.98})
    history = result.report.dump()["rounds"]["history"]
    assert [r["levers"] for r in history] == [[], ["repel"], ["repel", "retain"], ["repel", "retain"], ["capacity"]]


def test_a_rollback_from_a_round_that_was_short_as_well_drops_its_escalation(tmp_path: Path) -> None:
    # Round 2's repulsion breaks retention and is still short: nothing it erased is worth keeping, so round 3
    # starts again from round 1 and escalates by the next lever (capacity) at more retain weight.
    script = Script([(0.5, 1.0), (0.7, 0.6), (0.95, 0.95)])
    script.run(tmp_path, SpareConfig(max_rounds=3))
    first, _, third = script.configs
    assert third == first.model_copy(update={"w_retain": 2.0, "rank": 2 * first.rank,
                                             "max_modules": 2 * first.max_modules, "saliency_fraction": 0.98})


def test_neighbour_prompts_are_no_rollback_lever_even_where_the_spec_names_neighbours(tmp_path: Path) -> None:
    # Retain prompts in the forget phrasings (retain_neighbours) cost retention on the development models: a
    # rollback anchors, then weighs the retain term, and leaves them as the request set them.
    spec = ErasureSpec(concepts=[ConceptSpec(target="circle", surrogate="square", neighbours=["square", "heart"])])
    script = Script([(1.0, 0.5), (1.0, 0.6), (1.0, 0.95)])
    result = erase_until_verified(None, spec, half_anchored(max_rounds=3), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=script.evaluator, erase_fn=script.erase)
    assert {c.retain_neighbours for c in script.configs} == {0}
    history = result.report.dump()["rounds"]["history"]
    assert [r["levers"] for r in history] == [[], ["anchor"], ["retain"]]
    assert history[1]["changed"] == {"forget_anchor": "surrogate"} and history[2]["changed"] == {"w_retain": 2.0}


THRESHOLDS = Thresholds(min_unlearning_accuracy=0.9, min_retention=0.9, min_gap_closure=None, max_retain_drift=0.5)


def _finals(verdicts: list[tuple[float, float]], script: Script) -> Any:
    """A full evaluator whose judge evidence (more images than the check's) is scripted per round."""
    def evaluator(erased: Any, base: Any, complete: bool = False, judged: Any = None) -> dict[str, Any]:
        script.full_evaluations.append(len(script.configs))
        ua, retention = verdicts[len(script.configs) - 1]
        return {"judge": evidence(ua, retention, images=48, judge="full").model_dump(mode="json")}
    return evaluator


def test_a_passing_round_the_verification_refuses_escalates_instead_of_stopping(tmp_path: Path) -> None:
    # Round 1 passes its 6-image check, but the verification on 48 images finds UA 0.85: the loop does not stop
    # there; round 2 repels the forget target from the concept, passes both, and is kept.
    script = Script([(1.0, 1.0), (1.0, 1.0)])
    result = erase_until_verified(None, SPEC, SpareConfig(max_rounds=3), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=_finals([(0.85, 1.0), (0.96, 1.0)], script),
                                  erase_fn=script.erase, accept=acceptance(THRESHOLDS, ["circle"]))
    assert len(script.configs) == 2 and script.full_evaluations == [1, 2]
    assert script.grids == [False, True], "the refused round drew no grid: the rule is read before it is drawn"
    assert script.configs[1].forget_repel == 1.0
    rounds = result.report.dump()["rounds"]
    assert rounds["passed"] is True and rounds["chosen"] == 2
    first, second = rounds["history"]
    assert first["outcome"] == "short" and first["passed"] is False and first["retention_ok"] is True
    assert first["ua"] == {"circle": 0.85}, "a refused round reports the verification's numbers"
    assert first["refused"].startswith("verification failed: ua[circle] 0.850 is below the required 0.900")
    assert second["levers"] == ["repel"] and second["refused"] is None and second["outcome"] == "kept"


def test_a_passing_round_whose_verification_breaks_retention_is_rolled_back(tmp_path: Path) -> None:
    script = Script([(1.0, 1.0), (1.0, 1.0)])
    result = erase_until_verified(None, SPEC, half_anchored(max_rounds=2), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=_finals([(1.0, 0.75), (1.0, 0.95)], script),
                                  erase_fn=script.erase, accept=acceptance(THRESHOLDS, ["circle"]))
    first, second = script.configs
    assert second == first.model_copy(update={"forget_anchor": "surrogate"}), "retention won back, no escalation"
    history = result.report.dump()["rounds"]["history"]
    assert [r["outcome"] for r in history] == ["rolled back (retention)", "kept"]
    assert "retention[same-kind:object] 0.750" in history[0]["refused"] and history[0]["lost"] == {"square": 6}


def test_a_refusal_no_lever_addresses_ends_the_loop(tmp_path: Path) -> None:
    # No judge produced evidence for the final verdict: another round would not change that.
    script = Script([(1.0, 1.0), (1.0, 1.0)])

    def no_judge(erased: Any, base: Any, complete: bool = False, judged: Any = None) -> dict[str, Any]:
        script.full_evaluations.append(len(script.configs))
        return {"judge_error": "no judge could run: the CLIP model is not installed"}

    result = erase_until_verified(None, SPEC, SpareConfig(max_rounds=3), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=no_judge, erase_fn=script.erase,
                                  accept=acceptance(THRESHOLDS, ["circle"]))
    assert len(script.configs) == 1
    (only,) = result.report.dump()["rounds"]["history"]
    assert "no judge could run" in only["refused"] and result.report.dump()["rounds"]["passed"] is False


def test_the_acceptance_rule_tells_erasure_from_retention_in_the_grid_checks() -> None:
    accept = acceptance(THRESHOLDS, ["circle"])
    judge = evidence(1.0, 1.0, images=48).model_dump(mode="json")

    def grid(**row: float) -> RoundCheck:
        summary = {"circle": {"ua": 1.0, "ira": 0.9, "cra": 0.9, "ira_rel": 1.0, "cra_rel": 1.0, **row}}
        return accept(EngineMetrics.model_validate({"judge": judge, "summary": summary}))

    assert grid().passed
    short = grid(ua=0.8)
    assert (short.passed, short.ua_ok, short.retention_ok) == (False, False, True)
    broke = grid(ira_rel=0.8)
    assert (broke.passed, broke.ua_ok, broke.retention_ok) == (False, True, False)
    assert "grid_ira_rel[circle] 0.800" in broke.metrics["reason"]
    both = grid(ua=0.8, cra_rel=0.7)
    assert (both.ua_ok, both.retention_ok) == (False, False)


HEART = ErasureSpec(concepts=[ConceptSpec(target="circle", surrogate="heart")])


class Switches:
    """A scripted surrogate switch: the next surrogate from a list, or none left."""

    def __init__(self, *surrogates: str) -> None:
        self.left = list(surrogates)
        self.calls: list[tuple[str, str]] = []

    def __call__(self, spec: ErasureSpec, target: str) -> tuple[ErasureSpec | None, SurrogateScreen]:
        self.calls.append((target, str(next(c.surrogate for c in spec.concepts if c.target == target))))
        chosen = self.left.pop(0) if self.left else None
        record = SurrogateScreen(concept=target, kind="object", chosen=chosen, named=False, tried=[],
                                 switched=chosen is not None, seconds=0.0)
        if chosen is None:
            return None, record
        concepts = [c.model_copy(update={"surrogate": chosen}) if c.target == target else c for c in spec.concepts]
        return spec.model_copy(update={"concepts": concepts}), record


def test_a_round_whose_lost_images_became_the_surrogate_trains_toward_another(tmp_path: Path) -> None:
    # Round 1 erased circle but 12 of 24 squares came out as hearts (its surrogate spreading): round 2 starts
    # again from round 1's config and trains toward the next surrogate; its check judges that surrogate.
    script = Script([(1.0, 0.5), (1.0, 1.0)], lost_as="heart")
    switches = Switches("triangle")
    judged: list[str | None] = []
    check = script.check

    def seeing(erased: Any, base: Any) -> RoundCheck:
        judged.append(in_force(HEART).concepts[0].surrogate)
        return check(erased, base)

    result = erase_until_verified(None, HEART, SpareConfig(max_rounds=3), out_dir=tmp_path / "out", check=seeing,
                                  evaluator=script.evaluator, erase_fn=script.erase, switch=switches)
    assert switches.calls == [("circle", "heart")]
    assert [s.concepts[0].surrogate for s in script.specs] == ["heart", "triangle"]
    assert judged == ["heart", "triangle"], "each round's check judges the surrogate it trained toward"
    assert script.configs[1] == script.configs[0], "the surrogate changes, nothing else"
    rounds = result.report.dump()["rounds"]
    first, second = rounds["history"]
    assert first["lost_to"] == {"heart": 12} and first["outcome"] == "rolled back (retention)"
    assert second["levers"] == ["surrogate"] and second["changed"] == {"surrogate[circle]": "triangle"}
    assert [r["surrogates"] for r in rounds["history"]] == [{"circle": "heart"}, {"circle": "triangle"}]
    assert result.report.rounds is not None and result.report.rounds.kept_surrogates() == {"circle": "triangle"}
    assert rounds["passed"] is True and rounds["chosen"] == 2
    assert rounds["surrogates"][-1]["after_round"] == 1 and rounds["surrogates"][-1]["chosen"] == "triangle"
    assert in_force(HEART) is HEART, "outside a round nothing is switched"


def test_losses_that_did_not_become_the_surrogate_win_retention_back_as_before(tmp_path: Path) -> None:
    script = Script([(1.0, 0.5), (1.0, 1.0)], lost_as="circle")
    switches = Switches("triangle")
    result = erase_until_verified(None, HEART, half_anchored(max_rounds=3), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=script.evaluator, erase_fn=script.erase,
                                  switch=switches)
    assert switches.calls == [] and [s.concepts[0].surrogate for s in script.specs] == ["heart", "heart"]
    assert result.report.dump()["rounds"]["history"][1]["levers"] == ["anchor"]


def test_the_surrogate_is_switched_once_and_a_switch_with_no_candidate_falls_back(tmp_path: Path) -> None:
    # No candidate left: the retention levers instead, and the switch is not asked again for that concept.
    script = Script([(1.0, 0.5), (1.0, 0.5), (1.0, 1.0)], lost_as="heart")
    switches = Switches()
    result = erase_until_verified(None, HEART, half_anchored(max_rounds=3), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=script.evaluator, erase_fn=script.erase,
                                  switch=switches)
    assert len(switches.calls) == 1 and [c.w_retain for c in script.configs] == [1.0, 1.0, 2.0]
    rounds = result.report.dump()["rounds"]
    assert [r["levers"] for r in rounds["history"]] == [[], ["anchor"], ["retain"]]
    assert rounds["surrogates"][-1]["switched"] is False and rounds["surrogates"][-1]["after_round"] == 1


def test_a_switched_surrogate_that_breaks_retention_again_is_rolled_back_with_it(tmp_path: Path) -> None:
    script = Script([(1.0, 0.5), (1.0, 0.5), (1.0, 1.0)], lost_as="heart")
    switches = Switches("triangle", "star")
    result = erase_until_verified(None, HEART, half_anchored(max_rounds=3), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=script.evaluator, erase_fn=script.erase,
                                  switch=switches)
    assert [s.concepts[0].surrogate for s in script.specs] == ["heart", "triangle", "heart"]
    assert [r["levers"] for r in result.report.dump()["rounds"]["history"]] == [[], ["surrogate"], ["anchor"]]


def test_each_concept_whose_surrogate_spreads_gets_its_own_switch(tmp_path: Path) -> None:
    # Round 1's losses became hearts (circle's surrogate): round 2 trains circle toward triangle, keeps retention
    # but is short, so round 3 repels; its losses became crosses (star's surrogate): round 4 starts again
    # from round 2 (repulsion rolled back, circle's switch kept) and trains star toward square.
    two = ErasureSpec(concepts=[ConceptSpec(target="circle", surrogate="heart"),
                                ConceptSpec(target="star", surrogate="cross")])
    script = Script([(1.0, 0.5), (0.5, 1.0), (1.0, 0.5), (1.0, 1.0)], lost_as=["heart", "circle", "cross", "circle"])
    switches = Switches("triangle", "square")
    result = erase_until_verified(None, two, SpareConfig(max_rounds=4), out_dir=tmp_path / "out",
                                  check=script.check, evaluator=script.evaluator, erase_fn=script.erase,
                                  switch=switches)
    assert switches.calls == [("circle", "heart"), ("star", "cross")]
    assert [[c.surrogate for c in s.concepts] for s in script.specs] == [
        ["heart", "cross"], ["triangle", "cross"], ["triangle", "cross"], ["triangle", "square"]]
    assert script.configs[3] == script.configs[1] == script.configs[0], "repulsion was rolled back"
    rounds = result.report.dump()["rounds"]
    assert [r["levers"] for r in rounds["history"]] == [[], ["surrogate"], ["repel"], ["surrogate"]]
    assert [r["changed"] for r in rounds["history"]][3] == {"surrogate[star]": "square"}
    assert rounds["chosen"] == 4 and [s["after_round"] for s in rounds["surrogates"]] == [1, 3]


def test_esd_never_switches_a_surrogate(tmp_path: Path) -> None:
    script = Script([(1.0, 0.5), (1.0, 1.0)], lost_as="heart")
    switches = Switches("triangle")
    erase_until_verified(None, HEART, EsdConfig(max_rounds=2), out_dir=tmp_path / "out", check=script.check,
                         evaluator=script.evaluator, erase_fn=script.erase, switch=switches)
    assert switches.calls == []


def test_repel_grows_by_one_up_to_two() -> None:
    from core.spare.levers import lever_change

    assert lever_change("repel", SpareConfig()) == {"forget_repel": 1.0}
    assert lever_change("repel", SpareConfig(forget_repel=1.0)) == {"forget_repel": 2.0}
    assert lever_change("repel", SpareConfig(forget_repel=2.0)) == {}
    assert lever_change("repel", EsdConfig()) == {}


def test_narrow_confines_the_adapter_one_pool_at_a_time_and_is_not_in_the_loops_order() -> None:
    from core.spare.levers import RETENTION_LEVERS, SPARE_LEVERS, lever_change

    assert lever_change("narrow", SpareConfig(saliency_pool="attention")) == {"saliency_pool": "cross_attention"}
    assert lever_change("narrow", SpareConfig()) == {"saliency_pool": "cross_kv"}
    assert lever_change("narrow", SpareConfig(saliency_pool="cross_kv")) == {}
    assert lever_change("narrow", SpareConfig(saliency_pool="all")) == {}
    assert lever_change("narrow", EsdConfig()) == {}
    assert "narrow" not in SPARE_LEVERS + RETENTION_LEVERS


def test_project_confines_the_text_side_in_two_steps() -> None:
    from core.spare.levers import lever_change

    assert SpareConfig().retain_projection == 0.99
    assert lever_change("project", SpareConfig(retain_projection=0)) == {"retain_projection": 0.99}
    assert lever_change("project", SpareConfig()) == {"retain_projection": 0.999}
    assert lever_change("project", SpareConfig(retain_projection=0.999)) == {}
    assert lever_change("project", SpareConfig(retain_projection=0.9)) == {}
    assert lever_change("project", EsdConfig()) == {}


def test_cross_puts_retain_prompts_over_the_concepts_images_in_two_steps() -> None:
    from core.spare.levers import RETENTION_LEVERS, SPARE_LEVERS, lever_change

    assert SpareConfig().retain_on_forget == 0.0
    assert lever_change("cross", SpareConfig()) == {"retain_on_forget": 0.25}
    assert lever_change("cross", SpareConfig(retain_on_forget=0.25)) == {"retain_on_forget": 0.5}
    assert lever_change("cross", SpareConfig(retain_on_forget=0.5)) == {}
    assert lever_change("cross", EsdConfig()) == {}
    assert "cross" not in SPARE_LEVERS + RETENTION_LEVERS


def test_text_delivers_the_text_pathway_once_and_is_not_in_the_loops_order() -> None:
    from core.spare.levers import RETENTION_LEVERS, SPARE_LEVERS, lever_change

    assert SpareConfig().deliver_pool == "trained"
    assert lever_change("text", SpareConfig()) == {"deliver_pool": "cross_kv"}
    assert lever_change("text", SpareConfig(deliver_pool="cross_kv")) == {}
    assert lever_change("text", SpareConfig(saliency_pool="cross_kv")) == {}, "nothing else was trained"
    assert lever_change("text", EsdConfig()) == {}
    assert "text" not in SPARE_LEVERS + RETENTION_LEVERS


def test_decay_raises_the_lora_factors_weight_decay_to_one_once_and_is_not_in_the_loops_order() -> None:
    from core.spare.levers import RETENTION_LEVERS, SPARE_LEVERS, lever_change

    assert SpareConfig().weight_decay == 0.5
    assert lever_change("decay", SpareConfig()) == {"weight_decay": 1.0}
    assert lever_change("decay", SpareConfig(weight_decay=0.0)) == {"weight_decay": 1.0}
    assert lever_change("decay", SpareConfig(weight_decay=1.0)) == {}
    assert lever_change("decay", SpareConfig(weight_decay=2.0)) == {}, "a larger decay is never lowered"
    assert lever_change("decay", EsdConfig()) == {}
    assert "decay" not in SPARE_LEVERS + RETENTION_LEVERS
