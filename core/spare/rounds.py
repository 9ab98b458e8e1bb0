"""Erase until verified: rounds of train → a cheap image-level check → escalate, within a budget.

Each round is a full erasure from the base weights (`core.spare.engine.erase`) with the round's config. While
the round's erased weights exist, `check(erased, base)` judges a few held-out images (UA per erased concept,
retention per group of concepts that must stay). Then:

- the check passes → the full evaluator runs on the round and the caller's acceptance rule (`accept`, the
  verification behind a certificate, on more images than the check's) reads its metrics: accepted → the
  round is kept; refused → the round counts as short or as breaking retention by what the rule refused, and
  the loop goes on as below (the check's few images passed a round the final verdict would fail);
- retention broke → the round is rolled back: the next round starts again from the last round that kept
  retention, with the lever that broke it set aside. When at least half of the images it took from concepts
  that must stay became a target's surrogate (the surrogate spreads over its neighbours), the next round trains
  toward another surrogate (`switch`, once per concept); otherwise it anchors the forget term on the teacher's
  generations for the surrogate (unless anchoring is what broke it, or the config anchors it fully already, as
  the default does), after that more weight on the retain term (`core.spare.levers.RETENTION_LEVERS`). A round
  that broke retention but erased enough by the escalation lever it added keeps that lever: the next round
  wins retention back on top of it (without it, it would be as short as the round it escalated);
- UA is short → the next round escalates by the next lever: adapter capacity (rank, max_modules), the
  surrogate anchoring of the forget term (where not full already), repulsion (the forget target pushed past
  the surrogate, away from the concept), timestep focus, more contexts per prompt, placement (a wider saliency
  pool: self-attention as well; it acts whatever the prompt says), more steps.

The loop stops on an accepted pass, after `max_rounds`, on a refusal no lever addresses, or when another round
would not fit `time_budget_s` (measured from the start, estimated from the last round's time). The result is the
passing round, else the best one (retention kept first, then the lowest UA over the concepts); its report lists
every round (what changed, UA, retention, seconds, kept or rolled back, why the acceptance rule refused it).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from core.filehash import file_sha256
from core.spare.base_outputs import BaseOutputs
from core.spare.engine import ProgressFn, StopFn, erase
from core.spare.errors import ErasureInputError
from core.spare.evaluator import Evaluator
from core.spare.levers import ESD_LEVERS, SPARE_LEVERS, lever_change, retain_more
from core.spare.outputs import generate_images, list_files, write_grid, write_report
from core.spare.report import (
    EngineMetrics,
    ErasureResult,
    FileEntry,
    RoundsRecord,
    RoundSummary,
    SurrogateScreen,
)
from core.spare.round_spec import training_toward
from core.spare.specs import ErasureSpec, EsdConfig, SpareConfig


@dataclass
class RoundCheck:
    """The cheap check's verdict on one round."""

    ua: dict[str, float]  # per erased concept
    retention: dict[str, float | None]  # per retention group; None = the base itself never drew them
    passed: bool  # every UA and retention at its threshold
    retention_ok: bool  # every retention at its threshold
    ua_ok: bool = False  # every UA at its threshold
    lost: dict[str, int] = field(default_factory=dict)  # per kept concept: images the base drew and this round lost
    lost_to: dict[str, int] = field(default_factory=dict)  # per label: what those lost images became
    metrics: dict[str, Any] = field(default_factory=dict)  # what to report (e.g. the judge's evidence)

    def score(self) -> tuple[bool, bool, float, float]:
        kept = [r for r in self.retention.values() if r is not None]
        return (self.retention_ok, self.passed, min(self.ua.values(), default=0.0), min(kept, default=1.0))


CheckFn = Callable[[Any, Any], RoundCheck]
# accept(metrics of a fully evaluated round) -> the acceptance rule's verdict as a RoundCheck: `passed` = accepted;
# `ua_ok` / `retention_ok` say which side it refused; `metrics["reason"]` says why.
AcceptFn = Callable[[EngineMetrics], RoundCheck]
# switch(spec, target) -> (spec with another surrogate for target, or None when no candidate is left; the record of
# what was measured): `core.erasure.judging.verified_rounds` builds it on `core.evaluation.surrogates`.
SwitchFn = Callable[[ErasureSpec, str], tuple[ErasureSpec | None, SurrogateScreen]]

@dataclass
class _Round:
    index: int
    config: SpareConfig | EsdConfig
    changed: dict[str, Any]
    levers: list[str]
    spec: ErasureSpec  # the job's, or with a surrogate the loop switched
    escalations: list[str] = field(default_factory=list)  # the escalation levers in `levers` (not retention's)
    result: ErasureResult | None = None
    check: RoundCheck | None = None
    seconds: float = 0.0
    check_s: float = 0.0
    evaluate_s: float = 0.0
    evaluated: bool = False
    refused: str | None = None  # why the acceptance rule refused a round whose check passed

    def summary(self, outcome: str) -> RoundSummary:
        c = self.check
        return RoundSummary(
            round=self.index, levers=self.levers, changed=self.changed, seconds=round(self.seconds, 3),
            timings_s={"check": round(self.check_s, 3), "evaluate": round(self.evaluate_s, 3),
                       "other": round(max(0.0, self.seconds - self.check_s - self.evaluate_s), 3)},
            surrogates={c.target: c.surrogate_text() for c in self.spec.concepts},
            ua=c.ua if c else None, retention=c.retention if c else None,
            passed=c.passed if c else False, retention_ok=c.retention_ok if c else False,
            lost=c.lost if c else {}, lost_to=c.lost_to if c else {}, refused=self.refused, outcome=outcome,
        )


def erase_until_verified(
    pipeline: Any,
    spec: ErasureSpec,
    config: SpareConfig | EsdConfig,
    *,
    out_dir: Path,
    check: CheckFn,
    evaluator: Evaluator | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    erase_fn: Callable[..., ErasureResult] = erase,
    screened: list[SurrogateScreen] | None = None,
    accept: AcceptFn | None = None,
    switch: SwitchFn | None = None,
    **engine: Any,
) -> ErasureResult:
    """Run rounds until `check` passes or the budget (config.max_rounds, config.time_budget_s) is spent.

    `evaluator` (the job's full, final evaluation: `evaluator(erased, base, complete=False, judged=None)`) runs on
    the round that passes, or when none does on the best round (reloaded from its fused/ weights when it is not
    the last, and again with `complete=True` and its judge evidence as `judged` where its evaluation skipped
    diagnostics); the other rounds report their check only.
    Likewise only a round that passes its check or is the last draws the erased half of grid.png; a kept round
    without one gets it from its fused/ weights. `erase_fn` is the single-round engine; `engine` passes on to it
    (provenance, verifier). `screened`: the surrogate screen that chose `spec`'s surrogates
    (`core.evaluation.surrogates`), reported with the rounds and counted in their time. `accept`: the caller's
    acceptance rule on a passing round's full metrics (the verification a job applies); a round it refuses does not
    end the loop while the budget lasts — it then reports the rule's numbers (more images than the check's) and why
    it refused. `switch`: another surrogate for a target whose surrogate took a round's lost images (None:
    surrogates stay as `spec` has them); the check and the evaluator read the round's surrogates from
    `core.spare.round_spec.in_force`. `erase_fn` gets `base_outputs` (`core.spare.base_outputs`): the base model's
    draws of earlier rounds, which every round shares because it starts from the same base weights, and
    `grid_wanted` (whether the round can still be kept, asked with its metrics once the evaluator has run: the
    acceptance rule's verdict is read there, before the round's erased half of grid.png would be drawn)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ErasureInputError(f"output folder {out_dir} is not empty")
    started = time.monotonic()
    max_rounds = config.max_rounds
    budget = config.time_budget_s
    levers = list(SPARE_LEVERS if isinstance(config, SpareConfig) else ESD_LEVERS)
    set_aside: set[str] = set()
    good, good_spec = config, spec  # the last round that kept retention (rollback target)
    won_back: dict[str, Any] = {}  # what rollbacks changed to win retention back: kept by every later round
    switches: list[SurrogateScreen] = []  # surrogates the loop switched after a round
    rounds: list[_Round] = []
    work = out_dir / ".rounds"
    base_outputs = BaseOutputs()  # every round starts from the same base weights: what one drew, the next reuses
    current = _Round(1, config, {}, [], spec)
    while True:
        k = current.index
        elapsed = time.monotonic() - started
        if budget is not None and len(rounds) > 0 and elapsed + rounds[-1].seconds > budget:
            break  # another round would not fit the time budget
        # After this round, will another one fit? (When not, this round gets the full evaluation.)
        last_possible = bool(k >= max_rounds or (
            budget is not None and len(rounds) > 0 and elapsed + 2 * rounds[-1].seconds > budget
        ))

        def round_progress(stage: str, fraction: float, _k: int = k) -> None:
            if progress is not None:
                progress(f"round {_k}/{max_rounds}: {stage}", fraction)

        state: dict[str, Any] = {}

        def round_evaluator(erased: Any, base: Any, _last: bool = last_possible, state: dict[str, Any] = state,
                            _round: _Round = current) -> dict[str, Any]:
            t = time.monotonic()
            verdict = check(erased, base)
            _round.check_s = time.monotonic() - t
            state["check"] = verdict
            metrics: dict[str, Any] = {"round_check": verdict.metrics}
            if (verdict.passed or _last) and evaluator is not None:
                t = time.monotonic()
                full = evaluator(erased, base)
                _round.evaluate_s = time.monotonic() - t
                state["evaluated"] = True
                metrics = {**full, "round_check": verdict.metrics}
            elif "judge" in verdict.metrics:
                metrics["judge"] = verdict.metrics["judge"]
            return metrics

        def grid_wanted(metrics: EngineMetrics, _last: bool = last_possible, state: dict[str, Any] = state) -> bool:
            # Only a round that can be kept gets its before/after grid now: one whose check passed and which the
            # acceptance rule (read here, on the round's metrics) accepts, or the last; `_complete_saved` draws
            # it for a kept round that has none.
            verdict = state.get("check")
            if verdict is not None and verdict.passed and state.get("evaluated") and accept is not None:
                state["accepted"] = accept(metrics)
                return _last or state["accepted"].passed
            return _last or verdict is None or verdict.passed

        t0 = time.monotonic()
        with training_toward(_switched(spec, current.spec)):
            current.result = erase_fn(pipeline, current.spec, current.config, out_dir=work / str(k),
                                      progress=round_progress, should_stop=should_stop, evaluator=round_evaluator,
                                      base_outputs=base_outputs, grid_wanted=grid_wanted, **engine)
        current.check = state.get("check")
        current.evaluated = bool(state.get("evaluated"))
        if current.check is not None and current.check.passed and current.evaluated and accept is not None:
            final = state.get("accepted") or accept(current.result.report.metrics)
            if not final.passed:
                current.refused = str(final.metrics.get("reason") or "refused by the acceptance rule")
                current.check = replace(final, metrics={**current.check.metrics, "accept": final.metrics})
        current.seconds = time.monotonic() - t0
        rounds.append(current)
        verdict = current.check
        if verdict is None:
            raise ErasureInputError("the round check did not run (the engine skipped its evaluate stage)")
        if verdict.passed or last_possible:
            break
        if verdict.ua_ok and verdict.retention_ok:
            # Refused for a reason no lever changes (no evidence; a retention the model lost before this erasure):
            # another round would not help.
            break
        next_spec, noted = current.spec, {}
        escalated: list[str] = []  # the next round's escalation levers: kept by a rollback (below) or added
        if verdict.retention_ok:
            good, good_spec = current.config, current.spec
            base_cfg, changed, candidates, lever = good, {}, levers, ""
        else:
            # Roll back: the escalation lever that broke retention is not escalated again. (Retention levers and
            # surrogate switches have their own limits: a lever_change that cannot go further, once per concept.)
            set_aside.update(name for name in current.levers if name in levers)
            # The rollback target keeps what earlier rollbacks changed for retention.
            base_cfg = good.model_copy(update=won_back)
            next_spec, switched = good_spec, None
            spreading = _spreading(current.spec, verdict, set_aside)
            if spreading and switch is not None and isinstance(config, SpareConfig):
                set_aside.add(_switched_key(spreading))  # once per concept, whether a candidate was left or not
                # From the rollback target: a switch of another concept that this round made is rolled back too.
                switched, record = switch(good_spec, spreading)
                switches.append(record.model_copy(update={"after_round": k}))
                noted = {_switched_key(spreading): str(record.chosen)} if switched is not None else {}
            if switched is not None:
                lever, changed, next_spec = "surrogate", {}, switched
            else:
                lever, changed = retain_more(base_cfg, set_aside)
                won_back.update(changed)
                if changed and verdict.ua_ok and current.escalations:
                    # An escalation lever is only added to a short round: where it erased enough, the round
                    # without it would be short again. Keep it and win retention back on top of it.
                    escalated = list(current.escalations)
                    base_cfg, next_spec = current.config.model_copy(update=won_back), current.spec
                    fields = type(current.config).model_fields
                    changed = {**{key: v for key, v in current.changed.items() if key in fields}, **changed}
            candidates = levers if not verdict.ua_ok else []  # erasure was enough: only win retention back
        used: list[str] = [*escalated, lever] if changed or noted else []
        for name in candidates:
            if name in set_aside:
                continue
            change = lever_change(name, base_cfg.model_copy(update=changed))
            if change:
                changed = {**changed, **change}
                used.append(name)
                escalated.append(name)
                break
        if not changed and not noted:
            break  # nothing left to escalate
        # Each escalation lever once; steps may double again (as the retain weight may grow).
        set_aside.update(name for name in used if name in levers and name != "steps")
        current = _Round(k + 1, base_cfg.model_copy(update=changed), {**changed, **noted}, used, next_spec,
                         escalations=escalated)

    chosen = next((r for r in rounds if r.check and r.check.passed), None) or max(
        rounds, key=lambda r: (r.check.score() if r.check else (False, False, 0.0, 0.0), r.evaluated)
    )
    assert chosen.result is not None
    outcomes = []
    for r in rounds:
        if r is chosen:
            outcome = "kept"
        elif r.check is not None and not r.check.retention_ok:
            outcome = "rolled back (retention)"
        else:
            outcome = "short"
        outcomes.append(r.summary(outcome))
    with training_toward(_switched(spec, chosen.spec)):
        _complete_saved(pipeline, chosen, evaluator, base_outputs)
    return _finish(chosen, out_dir, work, outcomes, started - sum(r.seconds for r in screened or []), config,
                   [*(screened or []), *switches])


def _switched(spec: ErasureSpec, current: ErasureSpec) -> dict[str, str]:
    """target -> surrogate, where the round's spec trains toward another surrogate than the job's."""
    before = {c.target: c.surrogate for c in spec.concepts}
    return {c.target: c.surrogate for c in current.concepts
            if c.surrogate is not None and c.surrogate != before.get(c.target)}


def _switched_key(target: str) -> str:
    return f"surrogate[{target}]"


def _spreading(spec: ErasureSpec, verdict: RoundCheck, set_aside: set[str]) -> str | None:
    """The target whose surrogate at least half of the round's lost images became (images of concepts that
    must stay, drawn as the surrogate where the base drew them right), if any and if its surrogate was not
    switched before (`set_aside`)."""
    lost = sum(verdict.lost.values())
    for concept in spec.concepts:
        if _switched_key(concept.target) in set_aside:
            continue
        if lost and concept.surrogate and 2 * verdict.lost_to.get(concept.surrogate, 0) >= lost:
            return concept.target
    return None


def _complete_saved(pipeline: Any, chosen: _Round, evaluator: Evaluator | None, base_outputs: BaseOutputs) -> None:
    """What a kept round did not get while it ran — the full evaluation, the before/after grid (both only for a
    round that could be kept at the time), the diagnostics a refused verification skipped — from its erased UNet,
    reloaded from the round's fused/ folder (its weights no longer live in the pipeline). The evaluator runs with
    `complete=True`: a job that fails reports every number of the round it keeps; a round evaluated before hands
    its judge evidence back (`judged`), so the verdict the loop read stays the one reported and is not drawn
    twice."""
    assert chosen.result is not None
    report, out = chosen.result.report, chosen.result.out_dir
    evaluate = evaluator is not None and (not chosen.evaluated or bool(report.metrics.diagnostics_skipped))
    grid = bool(report.grid.prompts) and not (out / "grid.png").exists()
    unet_dir = out / "fused" / "unet"
    if not (evaluate or grid) or not unet_dir.is_dir():
        return  # nothing missing, or an engine that writes no fused weights: the round's check evidence stands
    unet = type(pipeline.unet).from_pretrained(str(unet_dir), dtype=pipeline.unet.dtype).to(pipeline.unet.device)
    erased = type(pipeline)(**{**pipeline.components, "unet": unet})
    erased.set_progress_bar_config(disable=True)
    if evaluate:
        assert evaluator is not None
        judged = report.metrics.judge if chosen.evaluated else None
        full = evaluator(erased, pipeline, complete=True,
                         judged=judged.model_dump(mode="json") if judged is not None else None)
        kept = report.metrics.model_dump(exclude_unset=True, exclude={"diagnostics_skipped"})
        report.metrics = EngineMetrics.model_validate({**kept, **full})
        chosen.evaluated = True
    if grid:
        drawn = [generate_images(model, report.grid.prompts, report.grid.seeds, steps=chosen.config.sample_steps,
                                 guidance=chosen.config.guidance_scale, memo=memo)
                 for model, memo in ((pipeline, base_outputs.images), (erased, None))]
        write_grid(report.grid.prompts, report.grid.kinds, report.grid.seeds, *drawn, out / "grid.png")


def _finish(chosen: _Round, out_dir: Path, work: Path, rounds: list[RoundSummary], started: float,
            requested: SpareConfig | EsdConfig, screened: list[SurrogateScreen]) -> ErasureResult:
    """Move the chosen round's files to out_dir and record every round in its report."""
    result = chosen.result
    assert result is not None
    source = result.out_dir
    for item in source.iterdir():
        shutil.move(str(item), str(out_dir / item.name))
    shutil.rmtree(work, ignore_errors=True)
    report = result.report.model_copy(update={"rounds": RoundsRecord(
        chosen=chosen.index,
        passed=bool(chosen.check and chosen.check.passed),
        max_rounds=requested.max_rounds,
        time_budget_s=requested.time_budget_s,
        requested_config=requested.model_dump(mode="json"),
        total_seconds=round(time.monotonic() - started, 3),
        history=rounds,
        surrogates=screened,
    )})
    files = list_files(out_dir)
    files.pop("report.json", None)
    report.files = {name: FileEntry(sha256=file_sha256(p), bytes=p.stat().st_size) for name, p in files.items()}
    files["report.json"] = write_report(out_dir, report)
    return ErasureResult(out_dir=out_dir, report=report, files=files)


def check_from_evidence(evidence: dict[str, Any], min_ua: float, min_retention: float) -> RoundCheck:
    """A RoundCheck from a JudgeEvidence (as JSON) against the verification thresholds."""
    ua = {c["concept"]: float(c["ua"]) for c in evidence.get("concepts") or []}
    retention = {f"{r['group']}:{r['kind']}": r.get("retention") for r in evidence.get("retention") or []}
    retention_ok = all(v is None or v >= min_retention for v in retention.values())
    ua_ok = bool(ua) and all(v >= min_ua for v in ua.values())
    images = [image for r in evidence.get("retention") or [] for image in r.get("lost") or []]
    lost = Counter(image["concept"] for image in images)
    lost_to = Counter(str(image.get("erased_label")) for image in images)
    return RoundCheck(ua=ua, retention=retention, passed=ua_ok and retention_ok, retention_ok=retention_ok, ua_ok=ua_ok,
                      lost=dict(sorted(lost.items())), lost_to=dict(sorted(lost_to.items())),
                      metrics={"judge": evidence, "thresholds": asdict(_Thresholds(min_ua, min_retention))})


@dataclass(frozen=True)
class _Thresholds:
    min_unlearning_accuracy: float
    min_retention: float
