"""Erasure requests and scoring on the mini-canvas testbed (its prompt format, concepts and judge).

On the testbed the forget prompts are the canvas's own training prompts for the target (in every context of
the other kind), the retain prompts are the other concepts of the same kind in those contexts, and the
evaluator scores UA / IRA / CRA with the testbed's classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.evaluation.settling import GridSettling
from core.spare.errors import ErasureInputError
from core.spare.specs import ConceptSpec, ErasureSpec


def concept_kind(target: str) -> str:
    from core.testbed.canvas import OBJECTS, STYLES

    if target in OBJECTS:
        return "object"
    if target in STYLES:
        return "style"
    raise ErasureInputError(
        f"{target!r} is not a testbed concept; objects: {', '.join(OBJECTS)}; styles: {', '.join(STYLES)}"
    )


def testbed_concept(target: str, surrogate: str | None = None, templates: Sequence[int] = (0, 1, 2, 3)) -> ConceptSpec:
    """The target in every context of the other kind, in the canvas's training wordings (<= 32 prompts)."""
    from core.testbed.canvas import OBJECTS, STYLES, prompt

    kind = concept_kind(target)
    if kind == "object":
        prompts = [prompt(target, s, t) for t in templates for s in STYLES]
    else:
        prompts = [prompt(o, target, t) for t in templates for o in OBJECTS]
    return ConceptSpec(target=target, surrogate=surrogate, kind=kind, prompts=prompts[:32])


def testbed_retain(targets: Sequence[str], limit: int = 30) -> list[str]:
    """Other concepts of the same kinds as the targets, in every context of the other kind (template 0)."""
    from core.testbed.canvas import OBJECTS, STYLES, prompt

    for t in targets:
        concept_kind(t)
    out = [prompt(o, s) for o in OBJECTS for s in STYLES if o not in targets and s not in targets]
    # Interleave so a cap keeps every concept represented.
    out.sort(key=lambda p: (hash_order(p), p))
    return out[:limit]


def testbed_surrogate(target: str, avoid: Sequence[str] = ()) -> str:
    """The next concept of the target's kind in canvas order that is not itself being erased."""
    from core.testbed.canvas import OBJECTS, STYLES

    names = OBJECTS if concept_kind(target) == "object" else STYLES
    start = names.index(target)
    for step in range(1, len(names)):
        candidate = names[(start + step) % len(names)]
        if candidate not in avoid:
            return candidate
    raise ErasureInputError(f"every {concept_kind(target)} of the testbed is being erased: no surrogate is left")


def fit_to_testbed(spec: ErasureSpec, config: Any) -> tuple[ErasureSpec, Any]:
    """A request in the testbed's phrasing: what its lethe.json declares (core.spare.prompting.fit_request),
    for callers that hold a spec for the canvas without the model folder (benchmarks)."""
    from core.evaluation.vocabulary import Vocabulary
    from core.spare.prompting import fit_request
    from core.testbed.canvas import vocabulary_document

    for c in spec.concepts:
        concept_kind(c.target)
    document = {k: v for k, v in vocabulary_document().items() if k != "format"}
    return fit_request(spec, config, Vocabulary.model_validate(document))


def hash_order(text: str) -> int:
    """A stable spread (not Python's salted hash) for interleaving prompts."""
    from core.evaluation.vocabulary import spread_order

    return spread_order(text)


def testbed_evaluator(
    targets: Sequence[str],
    *,
    testbed: Path | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3),
    steps: int | None = None,
    attacks: bool = False,
    attack_budget: int = 30,
    cached_base: bool = False,
    rest_only: bool = False,
    settle: GridSettling | None = None,
) -> Any:
    """evaluator(erased, base) -> metrics, wrapping core.evaluation.evaluate with the testbed's classifier.

    The result is the evaluator's Metrics as JSON plus, per target, ua/ira/cra at the top level for quick reading.
    `cached_base`: score the base from the evaluator's per-process cache of the testbed's shipped pipeline
    (benchmarks erasing many targets from one testbed) instead of regenerating it from the base pipeline each time.
    `rest_only`: targets of both kinds (a lineage of erasures), retention over the cells showing none of them.
    The base pipeline's grid is drawn once per evaluator and base (the rounds of a job share their base weights).
    The grid's sampling (steps unless given, guidance) is the testbed's own (`sampling_defaults(testbed)`).
    `settle`: more seeds while a target's verdict could still turn (`core.evaluation.metrics.GridSettling`).
    """
    from core.evaluation.metrics import BaseGridMemo, evaluate, sampling_defaults
    from core.spare.report import GridSummary
    from core.testbed.loading import load_classifier

    kinds = {concept_kind(t) for t in targets}
    if len(kinds) != 1 and not rest_only:
        raise ErasureInputError("the testbed evaluator scores one kind per run (all objects or all styles)")
    kind = kinds.pop() if len(kinds) == 1 else None
    classifier = load_classifier(testbed)
    # The grid is drawn as the testbed's own build measured it (its manifest), not with the default testbed's.
    own_steps, guidance = sampling_defaults(testbed)
    steps = steps if steps is not None else own_steps
    # Rounds of one job evaluate erasures of the same base weights on the same seeds: the base grid is drawn once.
    base_memo: BaseGridMemo = {}

    def evaluator(erased: Any, base: Any) -> dict[str, Any]:
        metrics = evaluate(
            erased, forget=list(targets), kind=kind, seeds=list(seeds), steps=steps, guidance_scale=guidance,
            base_pipeline=None if cached_base else base,
            classifier=classifier, attacks=attacks, attack_budget=attack_budget, rest_only=rest_only,
            base_testbed=testbed if cached_base else None, base_memo=base_memo, settle=settle,
        ).model_dump(mode="json")
        summary = {t["forget"]: {k: t[k] for k in GridSummary.model_fields} for t in metrics["targets"]}
        return {"testbed": metrics, "summary": summary}

    return evaluator
