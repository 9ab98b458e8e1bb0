"""What a job measures after training: image-level judge evidence on held-out prompts (the proof), plus the
model classifier's grid metrics where a model ships one (diagnostics). Built per job, called by the engine
with the erased and the base pipeline while the erased weights exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import Settings
from core.evaluation.judges import JudgeUnavailable, select_judge
from core.evaluation.vocabulary import VocabularyError, load_vocabulary
from core.logging import get_logger
from core.spare.errors import ErasureInputError

log = get_logger(__name__)
Evaluator = Callable[[Any, Any], dict[str, Any]]


def training_prompts(spec: Any, config: Any, tokenizer: Any = None) -> set[str]:
    """Every prompt the engine trains on for this spec and config (held-out prompts must avoid them).
    `tokenizer`: the model's, which decides (as in the engine) which generic templates are used."""
    from core.spare.prompting import tokens_of
    from core.spare.samples import forget_prompts, retain_prompts, surrogate_prompt

    tokens = tokens_of(tokenizer, spec)
    out: set[str] = set()
    limit = getattr(config, "max_forget_prompts", 32)
    for concept in spec.concepts:
        prompts = forget_prompts(concept, list(spec.retain), limit, tokens)
        out.update(prompts)
        out.update(surrogate_prompt(p, concept) for p in prompts)
    out.update(retain_prompts(spec, getattr(config, "max_retain_prompts", 24), tokens))
    return out


def grid_diagnostics(model_dir: Path, targets: list[str], *, seeds: Any = (0, 1),
                     attacks: bool = True, rest_only: bool = False) -> Evaluator | None:
    """UA/IRA/CRA on the canvas grid with the attack probe, scored by the folder's classifier, for a model
    folder whose lethe.json declares `"judge": {"diagnostics": "canvas-grid", "classifier": ...}`.
    `rest_only`: every concept a model version lost (both kinds), retention over the rest of the grid."""
    try:
        vocabulary = load_vocabulary(model_dir)
        declared = vocabulary.judge.get("classifier")
        if vocabulary.judge.get("diagnostics") != "canvas-grid" or not declared:
            return None
        from core.evaluation.attacks import CALIBRATED_BUDGET
        from core.spare.testbed_eval import testbed_evaluator

        classifier = Path(vocabulary.judge["_dir"]) / str(declared)
        return testbed_evaluator(targets, testbed=classifier, seeds=list(seeds), attacks=attacks,
                                 attack_budget=CALIBRATED_BUDGET, rest_only=rest_only)
    except (ImportError, ErasureInputError, VocabularyError, ValueError, OSError) as exc:
        log.info("no grid diagnostics for this job", reason=str(exc)[:200])
        return None


def job_evaluator(model_dir: Path, spec: Any, config: Any, settings: Settings, *, judge_name: str,
                  fingerprint: str | None, progress: Callable[[str, float], None] | None = None,
                  diagnostics: Evaluator | None = None) -> Evaluator:
    """evaluator(erased, base) -> metrics: {"judge": JudgeEvidence} or {"judge_error": why}, plus the
    `diagnostics` evaluator's metrics (workers pass `grid_diagnostics`; the CLI its own settings of it)."""
    from core.evaluation.evidence import gather_evidence

    targets = [(c.target, c.kind, c.surrogate) for c in spec.concepts]

    def evaluate(erased: Any, base: Any) -> dict[str, Any]:
        trained = training_prompts(spec, config, getattr(base, "tokenizer", None))
        metrics: dict[str, Any] = {}
        if diagnostics is not None:
            metrics.update(diagnostics(erased, base))
        try:
            vocabulary = load_vocabulary(model_dir)
            judge = select_judge(judge_name, base_pipeline=base, vocabulary=vocabulary,
                                 clip_path=settings.clip_judge_path, fingerprint=fingerprint)
            evidence = gather_evidence(
                erased, base, judge, vocabulary, targets, training_prompts=trained,
                forget_images=settings.judge_forget_images, retain_images=settings.judge_retain_images,
                steps=settings.judge_steps, guidance_scale=getattr(config, "guidance_scale", 5.0),
                progress=(lambda f: progress("judge", f)) if progress else None,
            )
        except (JudgeUnavailable, VocabularyError) as exc:
            log.warning("no judge could run", reason=str(exc))
            metrics["judge_error"] = f"no judge could run: {exc}"
            return metrics
        metrics["judge"] = evidence.model_dump(mode="json")
        return metrics

    return evaluate


def round_check(model_dir: Path, spec: Any, config: Any, settings: Settings, *, judge_name: str,
                fingerprint: str | None, min_unlearning_accuracy: float, min_retention: float,
                progress: Callable[[str, float], None] | None = None) -> Any:
    """check(erased, base) -> RoundCheck for erase-until-verified: the job's judge on a few held-out images
    (settings.round_check_*), on other seeds than the final verification's, against its thresholds; while a
    failing verdict is uncertain the sample doubles (pooled, up to settings.round_check_max_images per model).
    The judge is chosen once; a judge that cannot run makes every round's check fail (the job then fails as
    unverified)."""
    from core.evaluation.evidence import gather_evidence, pool_evidence, uncertain_failures
    from core.evaluation.evidence_schema import JudgeEvidence
    from core.spare.rounds import RoundCheck, check_from_evidence

    targets = [(c.target, c.kind, c.surrogate) for c in spec.concepts]
    chosen: dict[str, Any] = {}

    def check(erased: Any, base: Any) -> RoundCheck:
        try:
            vocabulary = load_vocabulary(model_dir)
            if "judge" not in chosen:
                chosen["judge"] = select_judge(judge_name, base_pipeline=base, vocabulary=vocabulary,
                                               clip_path=settings.clip_judge_path, fingerprint=fingerprint)
            trained = training_prompts(spec, config, getattr(base, "tokenizer", None))
            forget, retain = settings.round_check_forget_images, settings.round_check_retain_images

            def draw(k: int, scale: int) -> JudgeEvidence:
                # Each draw on its own seeds; none meets the final verification's (seed 900_000 onwards).
                return gather_evidence(
                    erased, base, chosen["judge"], vocabulary, targets, training_prompts=trained,
                    forget_images=forget * scale, retain_images=retain * scale, steps=settings.judge_steps,
                    guidance_scale=getattr(config, "guidance_scale", 5.0), seed=700_000 + 3_000_000 * k,
                    progress=(lambda f: progress("check", f)) if progress else None,
                )

            evidence, drawn, extensions = draw(0, 1), 1, 0
            # A small sample cannot tell a broken round from bad luck on a model that is often wrong even
            # before the erasure: while a failing verdict could still turn, draw as many images again and pool.
            while (uncertain_failures(evidence, min_unlearning_accuracy, min_retention)
                   and evidence.images <= settings.round_check_max_images):  # images: both models' count
                evidence = pool_evidence(evidence, draw(extensions + 1, drawn))
                drawn, extensions = drawn * 2, extensions + 1
        except (JudgeUnavailable, VocabularyError) as exc:
            log.warning("no judge could run the round check", reason=str(exc))
            return RoundCheck(ua={}, retention={}, passed=False, retention_ok=True,
                              metrics={"judge_error": f"no judge could run: {exc}"})
        result = check_from_evidence(evidence.model_dump(mode="json"), min_unlearning_accuracy, min_retention)
        result.metrics["extensions"] = extensions
        return result

    return check
