"""What a job measures after training: image-level judge evidence on held-out prompts (the proof), plus the
model classifier's grid metrics where a model ships one (diagnostics). Built per job, called by the engine
with the erased and the base pipeline while the erased weights exist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.config import Settings
from core.erasure.verification import Thresholds, inherited, verify
from core.evaluation.judges import JudgeUnavailable, select_judge
from core.evaluation.judges.base import Judge
from core.evaluation.settling import GridSettling
from core.evaluation.vocabulary import VocabularyError, load_vocabulary
from core.logging import get_logger
from core.spare.errors import ErasureInputError
from core.spare.evaluator import Evaluator

log = get_logger(__name__)
# Seeds of the held-out images: the rounds' checks and the final verification never draw the same image; each
# further draw of a sequential sample starts a stride on.
CHECK_SEED, VERIFY_SEED, DRAW_SEED_STRIDE = 700_000, 900_000, 3_000_000
JudgeFn = Callable[[Any], Judge]  # base pipeline -> the job's judge


def training_prompts(spec: Any, config: Any, tokenizer: Any = None) -> set[str]:
    """Every prompt the engine trains on for this spec and config (held-out prompts must avoid them).
    `tokenizer`: the model's, which decides (as in the engine) which generic templates are used."""
    from core.spare.prompting import tokens_of
    from core.spare.samples import forget_prompts, surrogate_prompt, training_retain

    tokens = tokens_of(tokenizer, spec)
    out: set[str] = set()
    limit = getattr(config, "max_forget_prompts", 32)
    forget = {c.target: forget_prompts(c, list(spec.retain), limit, tokens) for c in spec.concepts}
    for concept in spec.concepts:
        out.update(forget[concept.target])
        out.update(surrogate_prompt(p, concept) for p in forget[concept.target])
    out.update(training_retain(spec, config, forget, tokens))
    return out


def grid_diagnostics(model_dir: Path, targets: list[str], *, seeds: Sequence[int],
                     attacks: bool = True, rest_only: bool = False, settle: GridSettling | None = None
                     ) -> Evaluator | None:
    """UA/IRA/CRA on the canvas grid with the attack probe, scored by the folder's classifier, for a model
    folder whose lethe.json declares `"judge": {"diagnostics": "canvas-grid", "classifier": ...}`.
    `rest_only`: every concept a model version lost (both kinds), retention over the rest of the grid.
    `settle`: further seeds while a grid verdict could still turn (the verification's: `grid_settling`)."""
    try:
        vocabulary = load_vocabulary(model_dir)
        declared = vocabulary.judge.get("classifier")
        if vocabulary.judge.get("diagnostics") != "canvas-grid" or not declared:
            return None
        from core.evaluation.attacks import CALIBRATED_BUDGET
        from core.spare.testbed_eval import testbed_evaluator

        classifier = Path(vocabulary.judge["_dir"]) / str(declared)
        return testbed_evaluator(targets, testbed=classifier, seeds=list(seeds), attacks=attacks,
                                 attack_budget=CALIBRATED_BUDGET, rest_only=rest_only, settle=settle)
    except (ImportError, ErasureInputError, VocabularyError, ValueError, OSError) as exc:
        log.info("no grid diagnostics for this job", reason=str(exc)[:200])
        return None


def job_evaluator(model_dir: Path, spec: Any, config: Any, settings: Settings, *, judge_name: str,
                  fingerprint: str | None, progress: Callable[[str, float], None] | None = None,
                  diagnostics: Evaluator | None = None, thresholds: Thresholds | None = None) -> Evaluator:
    """evaluator(erased, base, complete=False) -> metrics: {"judge": JudgeEvidence} or {"judge_error": why},
    plus the `diagnostics` evaluator's metrics (workers pass `grid_diagnostics`; the CLI its own settings of it).
    `thresholds`: the verification's; while a verdict against them is uncertain the judge draws more held-out
    images (`sequential_evidence`, up to settings.judge_max_images), so that a certificate does not rest on a
    lucky first draw. None: the first draw only.

    With `thresholds`, the judge goes first and the diagnostics run only when its held-out evidence passes them
    (or no judge could run): diagnostics can only fail a verification, so on evidence that already refuses it
    they would change neither the verdict nor which side it refused, and they cost images (on a canvas grid:
    both models' grids on the training wordings, with the attack probe for workers). `diagnostics_skipped` then
    says so.
    `complete=True` runs them whatever the judge says (a version's start, measured against its source, needs
    every retention-side value: `core.erasure.lineage.against_source`; the round a job keeps is reported with all
    of them: `core.spare.rounds`). `judged`: the held-out evidence this evaluator drew for the same erased weights
    before (as JSON): reused as the judge's part instead of drawing it again."""
    from core.evaluation.evidence import gather_evidence, sequential_evidence
    from core.evaluation.evidence_schema import JudgeEvidence
    from core.spare.report import EngineMetrics
    from core.spare.round_spec import in_force

    # Every round it evaluates is judged against the same base weights on the same seeds: the base draws each
    # verification image once per job.
    base_memo: dict[int, dict[tuple[str, int], Any]] = {}

    def evaluate(erased: Any, base: Any, complete: bool = False,
                 judged: dict[str, Any] | None = None) -> dict[str, Any]:
        if judged is not None:
            evidence = JudgeEvidence.model_validate(judged)
            return _after_judge(evidence, erased, base, complete)
        in_round = in_force(spec)  # the surrogates the evaluated round trained toward
        targets = [(c.target, c.kind, c.surrogate) for c in in_round.concepts]
        trained = training_prompts(in_round, config, getattr(base, "tokenizer", None))
        metrics: dict[str, Any] = {}
        try:
            vocabulary = load_vocabulary(model_dir)
            judge = select_judge(judge_name, base_pipeline=base, vocabulary=vocabulary,
                                 clip_path=settings.clip_judge_path, fingerprint=fingerprint)

            def draw(k: int, scale: int, only: set[str] | None) -> JudgeEvidence:
                return gather_evidence(
                    erased, base, judge, vocabulary, targets, training_prompts=trained,
                    forget_images=settings.judge_forget_images * scale,
                    retain_images=settings.judge_retain_images * scale, steps=settings.judge_steps,
                    guidance_scale=getattr(config, "guidance_scale", 5.0), seed=VERIFY_SEED + DRAW_SEED_STRIDE * k,
                    progress=(lambda f: progress("judge", f)) if progress else None, only=only,
                    base_memo=base_memo.setdefault(id(base), {}),
                )

            if thresholds is None:
                evidence = draw(0, 1, None)
            else:
                evidence, _ = sequential_evidence(
                    draw, thresholds.min_unlearning_accuracy, thresholds.min_retention, settings.judge_max_images)
        except (JudgeUnavailable, VocabularyError) as exc:
            log.warning("no judge could run", reason=str(exc))
            metrics["judge_error"] = f"no judge could run: {exc}"
            return {**_diagnose(diagnostics, erased, base), **metrics}
        return _after_judge(evidence, erased, base, complete)

    def _after_judge(evidence: JudgeEvidence, erased: Any, base: Any, complete: bool) -> dict[str, Any]:
        metrics: dict[str, Any] = {"judge": evidence.model_dump(mode="json")}
        if complete or thresholds is None or verify(EngineMetrics(judge=evidence), thresholds).ok:
            return {**_diagnose(diagnostics, erased, base), **metrics}
        if diagnostics is not None:
            metrics["diagnostics_skipped"] = ("the judge's held-out evidence refused the erasure; diagnostics can "
                                              "only fail a verification, so they were not drawn")
        return metrics

    return evaluate


def _diagnose(diagnostics: Evaluator | None, erased: Any, base: Any) -> dict[str, Any]:
    return diagnostics(erased, base) if diagnostics is not None else {}


def round_check(model_dir: Path, spec: Any, config: Any, settings: Settings, *, judge: JudgeFn,
                min_unlearning_accuracy: float, min_retention: float,
                progress: Callable[[str, float], None] | None = None) -> Any:
    """check(erased, base) -> RoundCheck for erase-until-verified: the job's judge on a few held-out images
    (settings.round_check_*), on other seeds than the final verification's, against its thresholds; while a
    failure could still pass (and, with settings.round_check_settle_passes, while a pass could still fail) the
    sample doubles (pooled, up to settings.round_check_max_images). A pass it leaves uncertain goes to the
    verification, whose own sequential sample settles it; a round that verification refuses counts as short or
    is rolled back.
    `judge`: the job's judge (`shared_judge`, one for the surrogate screen and every round); a judge that cannot
    run makes every round's check fail (the job then fails as unverified)."""
    from core.evaluation.evidence import gather_evidence, sequential_evidence
    from core.evaluation.evidence_schema import JudgeEvidence
    from core.spare.round_spec import in_force
    from core.spare.rounds import RoundCheck, check_from_evidence

    # Every round judges against the same base weights on the same seeds: the base draws each image once.
    base_memo: dict[int, dict[tuple[str, int], Any]] = {}

    def check(erased: Any, base: Any) -> RoundCheck:
        judged = in_force(spec)  # the surrogates this round trained toward
        targets = [(c.target, c.kind, c.surrogate) for c in judged.concepts]
        try:
            vocabulary = load_vocabulary(model_dir)
            chosen = judge(base)
            trained = training_prompts(judged, config, getattr(base, "tokenizer", None))
            forget, retain = settings.round_check_forget_images, settings.round_check_retain_images

            def draw(k: int, scale: int, only: set[str] | None) -> JudgeEvidence:
                # Each draw on its own seeds; none meets the final verification's (CHECK_SEED vs VERIFY_SEED).
                return gather_evidence(
                    erased, base, chosen, vocabulary, targets, training_prompts=trained,
                    forget_images=forget * scale, retain_images=retain * scale, steps=settings.judge_steps,
                    guidance_scale=getattr(config, "guidance_scale", 5.0), seed=CHECK_SEED + DRAW_SEED_STRIDE * k,
                    progress=(lambda f: progress("check", f)) if progress else None,
                    base_memo=base_memo.setdefault(id(base), {}), only=only,
                )

            evidence, extensions = sequential_evidence(draw, min_unlearning_accuracy, min_retention,
                                                       settings.round_check_max_images,
                                                       settle_passes=settings.round_check_settle_passes)
        except (JudgeUnavailable, VocabularyError) as exc:
            log.warning("no judge could run the round check", reason=str(exc))
            return RoundCheck(ua={}, retention={}, passed=False, retention_ok=True,
                              metrics={"judge_error": f"no judge could run: {exc}"})
        result = check_from_evidence(evidence.model_dump(mode="json"), min_unlearning_accuracy, min_retention)
        result.metrics["extensions"] = extensions
        return result

    return check


# Checks of the verification rule that measure erasure (the rest measure what must stay).
_FORGET_CHECKS = ("ua[", "grid_ua[", "forget_gap_closure")


def acceptance(thresholds: Thresholds, concepts: list[str]) -> Callable[[Any], Any]:
    """accept(metrics) -> RoundCheck for erase-until-verified: the verification a job applies
    (`core.erasure.verification.verify`), read on a round whose cheap check passed. A refusal says which side
    failed — erasure (UA, grid UA, gap closure) or retention (held-out retention, grid IRA/CRA, retain drift) —
    so that the loop escalates or rolls back as it would on a failed check; numbers are the judge's pooled
    held-out evidence. `concepts`: every concept that needs image evidence (as for `verify`)."""
    from core.spare.rounds import check_from_evidence

    def accept(metrics: Any) -> Any:
        verdict = verify(metrics, thresholds, concepts)
        evidence = metrics.judge.model_dump(mode="json") if metrics.judge is not None else {}
        found = check_from_evidence(evidence, thresholds.min_unlearning_accuracy, thresholds.min_retention)
        failed = [name for name, c in verdict.checks.items() if not c["passed"]]
        forget = [name for name in failed if name.startswith(_FORGET_CHECKS)]
        lost_before = inherited(verdict, metrics, thresholds)
        reason = verdict.reason
        if lost_before and len(forget) + len(lost_before) == len(failed):
            # Every retention the rule refused, the version this erasure started from had lost already: rolling
            # back or retaining harder cannot win it back (that version is the retain teacher). Report it as a
            # refusal no lever changes, unless erasure fell short too.
            reason += (f"; lost before this erasure: {', '.join(lost_before)} fail(s) for the version it started "
                       "from as well, so no round can win it back")
            return replace(found, passed=False, ua_ok=not forget, retention_ok=True,
                           metrics={**found.metrics, "reason": reason})
        return replace(found, passed=verdict.ok, ua_ok=not forget, retention_ok=len(forget) == len(failed),
                       metrics={**found.metrics, "reason": reason})

    return accept


ScreeningFn = Callable[[Any, Sequence[str]], Any]  # (base, avoid) -> core.evaluation.surrogates.Screening


def screenings(model_dir: Path, settings: Settings, *, judge: JudgeFn, min_unlearning_accuracy: float,
               min_retention: float | None, guidance_scale: float) -> ScreeningFn:
    """screening(base, avoid) -> what the screen and a later switch measure candidates with
    (`core.evaluation.surrogates.Screening`), one per base model and `avoid` so that a switch reuses the
    screen's labelled base images: the job's judge on `base`, the folder's vocabulary, a confusion allowance of
    1 - min_unlearning_accuracy, a neighbourhood allowance of 1 - min_retention (None, or
    settings.surrogate_screen_neighbours off: not measured), settings.surrogate_screen_images per concept drawn
    with the judge's steps and the job's guidance. Raises JudgeUnavailable / VocabularyError when no judge or
    vocabulary can be had."""
    from core.evaluation.surrogates import Screening, ScreenSampling

    made: dict[tuple[int, tuple[str, ...]], Any] = {}
    max_tangle = (round(1 - min_retention, 6)
                  if min_retention is not None and settings.surrogate_screen_neighbours else None)

    def screening(base: Any, avoid: Sequence[str] = ()) -> Any:
        key = (id(base), tuple(avoid))
        if key not in made:
            made[key] = Screening(
                base=base, judge=judge(base), vocabulary=load_vocabulary(model_dir),
                max_confusion=round(1 - min_unlearning_accuracy, 6), avoid=tuple(avoid), max_tangle=max_tangle,
                order=settings.surrogate_screen_order,
                sampling=ScreenSampling(images=settings.surrogate_screen_images, steps=settings.judge_steps,
                                        guidance_scale=guidance_scale))
        return made[key]

    return screening


def surrogate_screen(settings: Settings, *, screening: ScreeningFn,
                     progress: Callable[[str, float], None] | None = None) -> Callable[..., Any]:
    """screen(base, spec, named, avoid=()) -> (spec, records): before the first round, the job's judge looks at
    the base model's images of each surrogate (`screening`, from `screenings`); a surrogate the vocabulary
    picked that the judge labels as its target more often than 1 - min_unlearning_accuracy, or that the base
    model mixes up with a concept that must stay more often than 1 - min_retention, is replaced
    (`core.evaluation.surrogates`). settings.surrogate_screen_images = 0, or a judge that cannot run, leaves
    the spec as it is."""
    from core.evaluation.surrogates import screen_surrogates

    def screen(base: Any, spec: Any, named: set[str], avoid: Any = ()) -> tuple[Any, list[Any]]:
        if settings.surrogate_screen_images <= 0:
            return spec, []
        try:
            return screen_surrogates(screening(base, avoid), spec, named=named,
                                     progress=(lambda f: progress("surrogate screen", f)) if progress else None)
        except (JudgeUnavailable, VocabularyError) as exc:
            log.warning("no judge could screen the surrogates", reason=str(exc))
            return spec, []

    return screen


def shared_judge(model_dir: Path, settings: Settings, *, judge_name: str, fingerprint: str | None) -> JudgeFn:
    """judge(base) -> the job's judge, chosen on the first call that succeeds and then reused (a CLIP judge
    loads its model once per job however many steps consult it); JudgeUnavailable propagates and is retried."""
    chosen: list[Judge] = []

    def judge(base: Any) -> Judge:
        if not chosen:
            chosen.append(select_judge(judge_name, base_pipeline=base, vocabulary=load_vocabulary(model_dir),
                                       clip_path=settings.clip_judge_path, fingerprint=fingerprint))
        return chosen[0]

    return judge


def surrogate_switch(base: Any, settings: Settings, *, screening: ScreeningFn, named: set[str],
                     erased: Sequence[str] = ()) -> Callable[[Any, str], tuple[Any, Any]]:
    """switch(spec, target) -> (spec with another surrogate for target or None, record) for erase-until-verified
    (`core.evaluation.surrogates.switch_surrogate` on `base`, measured as the screen measures and on its
    labelled images; the loop asks once per concept): a surrogate the request named is never switched."""
    from core.evaluation.surrogates import switch_surrogate
    from core.spare.report import SurrogateScreen

    def switch(spec: Any, target: str) -> tuple[Any, Any]:
        concept = next(c for c in spec.concepts if c.target == target)
        kept = SurrogateScreen(concept=target, kind=concept.kind, chosen=concept.surrogate, named=target in named,
                               tried=[], switched=False, seconds=0.0)
        if target in named or settings.surrogate_screen_images <= 0:
            return None, kept
        try:
            return switch_surrogate(screening(base, erased), spec, target, used={str(concept.surrogate)})
        except (JudgeUnavailable, VocabularyError) as exc:
            log.warning("no judge could screen another surrogate", reason=str(exc))
            return None, kept

    return switch


def verified_rounds(base: Any, model_dir: Path, requested: Any, spec: Any, config: Any, settings: Settings, *,
                    judge_name: str, fingerprint: str | None, thresholds: Thresholds, erased: Sequence[str] = (),
                    progress: Callable[[str, float], None] | None = None) -> tuple[Any, list[Any], Any, Any]:
    """What erase-until-verified needs besides the engine and the final evaluator, as workers, `lethe erase` and
    the benchmarks assemble it -> (spec, screened, check, switch): the surrogate screen on `base` (`requested`:
    the request before fit_request, whose named surrogates are kept; `erased`: concepts `base` has lost, never a
    surrogate), the round check of the screened spec, and the surrogate switch the loop may make after a round.
    All use one judge."""
    from core.spare.prompting import named_surrogates

    judge = shared_judge(model_dir, settings, judge_name=judge_name, fingerprint=fingerprint)
    guidance = getattr(config, "guidance_scale", 5.0)
    screening = screenings(model_dir, settings, judge=judge,
                           min_unlearning_accuracy=thresholds.min_unlearning_accuracy,
                           min_retention=thresholds.min_retention, guidance_scale=guidance)
    screen = surrogate_screen(settings, screening=screening, progress=progress)
    named = named_surrogates(requested)
    spec, screened = screen(base, spec, named, erased)
    check = round_check(model_dir, spec, config, settings, judge=judge,
                        min_unlearning_accuracy=thresholds.min_unlearning_accuracy,
                        min_retention=thresholds.min_retention, progress=progress)
    switch = surrogate_switch(base, settings, screening=screening, named=named, erased=erased)
    return spec, screened, check, switch
