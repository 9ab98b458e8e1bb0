"""Image-level evidence that an erasure worked: what a judge sees in images made from held-out prompts.

For every erased concept, the erased and the base model draw the concept's held-out prompts (phrasings the
erasure never trained on, that the model's tokenizer encodes whole: a cut prompt may have lost the concept) on
fixed seeds; the judge labels each image among the concept, its surrogate and the other concepts of its kind.
UA is the share of the erased model's images NOT labelled as the concept.
Retention: both models draw held-out prompts of concepts that must stay (the other concepts of the erased
kind, and of the other kinds); an image is kept when the judge still labels it as its own concept; retention is
the erased model's kept share over the base model's on the same prompts and seeds (1.0 = untouched). A prompt of
the other kind may place its concept in an erased one's context ("a dotted cross" while dotted is erased): its
image still has to show its own concept (the cross), whatever the erasure made of the erased context.
Intervals are Wilson score intervals (95 %) on the erased model's proportions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from core.evaluation.evidence_schema import ConceptEvidence, JudgeEvidence, LostImage, RetentionEvidence
from core.evaluation.judges.base import Judge
from core.evaluation.sampling import generate
from core.evaluation.settling import unsettled
from core.evaluation.vocabulary import Vocabulary
from core.spare.base_outputs import drawn
from core.spare.prompting import untruncated

ProgressFn = Callable[[float], None]
Z95 = 1.959964


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound at 0 and 1, unlike the normal approximation)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def relative_interval(correct: int, n: int, base_rate: float) -> tuple[float, float] | None:
    """The Wilson interval of a share of `n` images, over the base model's rate on the same images (a retention's
    interval); None where the base rate is 0 (nothing to be relative to)."""
    if base_rate <= 0:
        return None
    low, high = wilson(correct, n)
    return (round(low / base_rate, 4), round(high / base_rate, 4))


def _spread(items: Sequence[str], n: int) -> list[str]:
    return [items[i % len(items)] for i in range(n)] if items else []


def _pairs(prompts: list[str], per: int, seed0: int) -> tuple[list[str], list[int]]:
    """`per` images over `prompts`: cycle the prompts, each image its own seed."""
    chosen = _spread(prompts, per)
    return chosen, [seed0 + i for i in range(len(chosen))]


class HeldoutImages(BaseModel):
    """What both models drew for verification: one row per image (group, kind, own concept, prompt, seed)."""

    model_config = {"arbitrary_types_allowed": True}

    plan: list[tuple[str, str, str, str, int]]
    groups: list[tuple[str, str, list[str]]]
    targets: list[tuple[str, str, str | None]]
    labels: dict[str, list[str]]  # kind -> candidates
    base: Any
    erased: Any
    excluded_training_prompts: int
    steps: int
    guidance_scale: float
    vocabulary: str
    seconds: float


def draw_heldout(
    erased: Any,
    base: Any,
    vocabulary: Vocabulary,
    targets: Sequence[tuple[str, str, str | None]],  # (concept, kind, surrogate)
    *,
    training_prompts: set[str],
    forget_images: int = 12,
    retain_images: int = 24,
    steps: int = 10,
    guidance_scale: float = 5.0,
    seed: int = 900_000,
    progress: ProgressFn | None = None,
    base_memo: dict[tuple[str, int], np.ndarray] | None = None,
    only: set[str] | None = None,
) -> HeldoutImages:
    """Both models draw the held-out prompts of the erased concepts and of the concepts that must stay.

    `base_memo`: the base model's images by (prompt, seed) from earlier calls with the same base weights, steps
    and guidance (an image depends on nothing else); filled with what this call draws. Rounds of one job share
    one, so the base draws each check image once.
    `only`: the verdicts to draw images for (names as `uncertain_verdicts` gives them: `ua:<concept>`,
    `retention:<group>:<kind>`); the others get no images here (a sequential sample's extension draws only what
    is still open). Group sizes stay those of a full draw."""
    started = time.perf_counter()
    erased_names = {c for c, _, _ in targets}
    vocab = vocabulary
    for concept, kind, surrogate in targets:
        # A declared vocabulary is the judge's label space (a model's classifier knows only those): a free-text
        # surrogate joins the candidates only where the model declares nothing.
        declared = vocabulary.source != "default" and kind in vocabulary.concepts
        known = surrogate and (not declared or surrogate in vocabulary.concepts[kind])
        vocab = vocab.with_concepts(kind, [concept] + ([surrogate] if known else []))
    excluded = 0

    def heldout(kind: str, concept: str) -> list[str]:
        nonlocal excluded
        prompts = untruncated(vocab.heldout_prompts(kind, concept), getattr(base, "tokenizer", None))
        kept = [p for p in prompts if p not in training_prompts]
        excluded += len(prompts) - len(kept)
        return kept

    plan: list[tuple[str, str, str, str, int]] = []
    for ci, (concept, kind, _) in enumerate(targets):
        prompts, seeds = _pairs(heldout(kind, concept), forget_images, seed + 10_000 * ci)
        plan += [(f"forget:{concept}", kind, concept, p, s) for p, s in zip(prompts, seeds, strict=True)]
    erased_kinds = sorted({k for _, k, _ in targets})
    groups: list[tuple[str, str, list[str]]] = []
    for kind in erased_kinds:
        keep = [c for c in vocab.concepts.get(kind, []) if c not in erased_names]
        groups.append(("same-kind", kind, keep))
    for kind in sorted(k for k in vocab.concepts if k not in erased_kinds):
        groups.append(("other-kind", kind, list(vocab.concepts[kind])))
    groups = [g for g in groups if g[2]]
    per_group = max(1, retain_images // max(1, len(groups))) if groups else 0
    for gi, (group, kind, concepts) in enumerate(groups):
        # Interleave concepts so that any count covers every concept of the group; each concept starts at its
        # own place in its (balanced) phrasings, so that the group's first images do not share one context.
        prompt_lists = [heldout(kind, c) for c in concepts]
        rows = [(c, lst[(i + ci) % len(lst)]) for i in range(per_group)
                for ci, (c, lst) in enumerate(zip(concepts, prompt_lists, strict=True)) if lst][:per_group]
        plan += [(f"{group}:{kind}", kind, c, p, seed + 500_000 + 1000 * gi + i) for i, (c, p) in enumerate(rows)]

    if only is not None:
        plan = [row for row in plan if _verdict_name(row[0]) in only]
    prompts = [row[3] for row in plan]
    seeds = [row[4] for row in plan]
    tick = progress or (lambda f: None)

    def draw_base(indices: list[int]) -> list[np.ndarray]:
        return list(generate(base, [prompts[i] for i in indices], [seeds[i] for i in indices], steps=steps,
                             guidance_scale=guidance_scale, progress=lambda d, n: tick(0.4 * d / max(n, 1))))

    drawn_base = drawn(base_memo, list(zip(prompts, seeds, strict=True)), draw_base) if plan else []
    images_base = np.stack(drawn_base) if plan else np.zeros((0, 0, 0, 3), dtype=np.uint8)
    images_erased = generate(erased, prompts, seeds, steps=steps, guidance_scale=guidance_scale,
                             progress=lambda d, n: tick(0.4 + 0.4 * d / max(n, 1)))
    return HeldoutImages(
        plan=plan, groups=groups, targets=list(targets),
        labels={kind: list(vocab.concepts.get(kind, [])) for kind in {row[1] for row in plan}},
        base=images_base, erased=images_erased, excluded_training_prompts=excluded, steps=steps,
        guidance_scale=guidance_scale, vocabulary=vocabulary.source, seconds=time.perf_counter() - started,
    )


def _verdict_name(plan_group: str) -> str:
    """A plan row's group (`forget:<concept>`, `<group>:<kind>`) as the verdict it feeds is named."""
    head, _, rest = plan_group.partition(":")
    return f"ua:{rest}" if head == "forget" else f"retention:{plan_group}"


def judge_heldout(held: HeldoutImages, judge: Judge, progress: ProgressFn | None = None) -> JudgeEvidence:
    """Let `judge` label both models' held-out images and reduce the verdicts to UA and retention."""
    started = time.perf_counter()
    plan = held.plan
    verdict_base: list[str | None] = [None] * len(plan)
    verdict_erased: list[str | None] = [None] * len(plan)
    kinds = sorted(held.labels)
    for ki, kind in enumerate(kinds):
        idx = [i for i, row in enumerate(plan) if row[1] == kind]
        both = np.concatenate([held.base[idx], held.erased[idx]])
        verdicts = judge.classify(both, kind, held.labels[kind])
        for j, i in enumerate(idx):
            verdict_base[i], verdict_erased[i] = verdicts[j], verdicts[len(idx) + j]
        if progress:
            progress(0.8 + 0.2 * (ki + 1) / len(kinds))

    concepts_out = []
    for concept, kind, surrogate in held.targets:
        rows = [i for i, row in enumerate(plan) if row[0] == f"forget:{concept}"]
        concepts_out.append(concept_evidence(
            concept, kind, surrogate, labels=held.labels.get(kind, []), prompts=[plan[i][3] for i in rows],
            seeds=[plan[i][4] for i in rows], recognized_base=sum(verdict_base[i] == concept for i in rows),
            recognized_erased=sum(verdict_erased[i] == concept for i in rows),
        ))
    retention_out = []
    for group, kind, concepts in held.groups:
        rows = [i for i, row in enumerate(plan) if row[0] == f"{group}:{kind}"]
        lost = [LostImage(concept=plan[i][2], prompt=plan[i][3], seed=plan[i][4], erased_label=str(verdict_erased[i]))
                for i in rows if verdict_base[i] == plan[i][2] and verdict_erased[i] != plan[i][2]]
        retention_out.append(retention_evidence(
            group, kind, concepts, prompts=[plan[i][3] for i in rows], seeds=[plan[i][4] for i in rows],
            correct_base=sum(verdict_base[i] == plan[i][2] for i in rows),
            correct_erased=sum(verdict_erased[i] == plan[i][2] for i in rows), lost=lost,
        ))
    return JudgeEvidence(
        judge=judge.describe(), excluded_training_prompts=held.excluded_training_prompts, concepts=concepts_out,
        retention=retention_out, steps=held.steps, guidance_scale=held.guidance_scale, images=2 * len(plan),
        seconds=round(held.seconds + time.perf_counter() - started, 3),
        judge_seconds=round(time.perf_counter() - started, 3), vocabulary=held.vocabulary,
    )


def gather_evidence(erased: Any, base: Any, judge: Judge, vocabulary: Vocabulary,
                    targets: Sequence[tuple[str, str, str | None]], *, progress: ProgressFn | None = None,
                    **draw: Any) -> JudgeEvidence:
    """Draw the held-out images (see `draw_heldout` for the options) and judge them."""
    held = draw_heldout(erased, base, vocabulary, targets, progress=progress, **draw)
    return judge_heldout(held, judge, progress)


def concept_evidence(concept: str, kind: str, surrogate: str | None, *, labels: list[str], prompts: list[str],
                     seeds: list[int], recognized_base: int, recognized_erased: int) -> ConceptEvidence:
    """UA of one erased concept from the judge's counts on `len(prompts)` image pairs."""
    n = len(prompts)
    return ConceptEvidence(
        concept=concept, kind=kind, surrogate=surrogate, prompts=prompts, seeds=seeds, images=n, labels=labels,
        recognized_base=recognized_base, recognized_erased=recognized_erased,
        ua=round(1 - recognized_erased / n, 4) if n else 0.0, ua_interval=wilson(n - recognized_erased, n),
        base_ua=round(1 - recognized_base / n, 4) if n else 0.0,
    )


def retention_evidence(group: str, kind: str, concepts: list[str], *, prompts: list[str], seeds: list[int],
                       correct_base: int, correct_erased: int,
                       lost: list[LostImage] | None = None) -> RetentionEvidence:
    """Retention of one group from the judge's counts: erased accuracy over base accuracy, same prompts and seeds."""
    n = len(prompts)
    acc_base, acc_erased = (correct_base / n, correct_erased / n) if n else (0.0, 0.0)
    return RetentionEvidence(
        group=group, kind=kind, concepts=concepts, prompts=prompts, seeds=seeds, images=n,
        correct_base=correct_base, correct_erased=correct_erased, accuracy_base=round(acc_base, 4),
        accuracy_erased=round(acc_erased, 4), accuracy_interval=wilson(correct_erased, n),
        retention=round(acc_erased / acc_base, 4) if acc_base > 0 else None,
        retention_interval=relative_interval(correct_erased, n, acc_base),
        lost=lost or [],
    )


def pool_evidence(first: JudgeEvidence, more: JudgeEvidence) -> JudgeEvidence:
    """One body of evidence from two draws by the same judge on disjoint seeds: counts add, rates and intervals are
    recomputed on the pooled images (a sequential sample: the second draw is taken when the first is uncertain).
    A verdict the second draw has no images for keeps the first draw's numbers."""
    extra_c = {c.concept: c for c in more.concepts if c.images}
    concepts = []
    for c in first.concepts:
        m = extra_c.get(c.concept)
        concepts.append(c if m is None else concept_evidence(
            c.concept, c.kind, c.surrogate, labels=c.labels, prompts=c.prompts + m.prompts, seeds=c.seeds + m.seeds,
            recognized_base=c.recognized_base + m.recognized_base,
            recognized_erased=c.recognized_erased + m.recognized_erased,
        ))
    extra_r = {(r.group, r.kind): r for r in more.retention if r.images}
    retention = []
    for r in first.retention:
        m = extra_r.get((r.group, r.kind))
        retention.append(r if m is None else retention_evidence(
            r.group, r.kind, r.concepts, prompts=r.prompts + m.prompts, seeds=r.seeds + m.seeds,
            correct_base=r.correct_base + m.correct_base, correct_erased=r.correct_erased + m.correct_erased,
            lost=r.lost + m.lost,
        ))
    return first.model_copy(update={
        "concepts": concepts, "retention": retention, "images": first.images + more.images,
        "seconds": round(first.seconds + more.seconds, 3),
        "judge_seconds": round(first.judge_seconds + more.judge_seconds, 3),
        "excluded_training_prompts": max(first.excluded_training_prompts, more.excluded_training_prompts),
        "draws": first.draws + more.draws,
    })


def uncertain_verdicts(evidence: JudgeEvidence, min_ua: float, min_retention: float, *,
                       passes: bool = True) -> list[str]:
    """The verdicts a larger sample could still turn, either way: the point estimate on one side of its threshold
    while the 95 % interval reaches the other. A round's outcome rests on two decisions, every UA at its threshold
    and every retention at its threshold; once one verdict of a decision fails clearly (interval wholly below),
    more images cannot change that decision and its other verdicts are not listed. `passes` False: only failures
    that could still pass are listed (a pass that could still fail is left to a later, larger sample)."""

    ua = [(f"ua:{c.concept}", c.ua, c.ua_interval) for c in evidence.concepts if c.images]
    kept = [(f"retention:{r.group}:{r.kind}", r.retention, r.retention_interval) for r in evidence.retention
            if r.retention is not None and r.retention_interval is not None]
    return unsettled(ua, min_ua, passes=passes) + unsettled(kept, min_retention, passes=passes)


Draw = Callable[[int, int, "set[str] | None"], JudgeEvidence]  # (extension k, scale, only) -> evidence


def sequential_evidence(draw: Draw, min_ua: float, min_retention: float, max_images: int, *,
                        settle_passes: bool = True) -> tuple[JudgeEvidence, int]:
    """Evidence that keeps drawing while a verdict could still turn -> (pooled evidence, extensions).

    `draw(k, scale, only)`: draw k (0 first) on seeds of its own, `scale` times the first draw's images, for the
    verdicts `only` (None: all). A small sample cannot tell a broken erasure from bad luck on a model that is
    often wrong even before it, nor a sound one from a lucky draw (6 of 6 erased still allows a UA of 0.61):
    while a verdict is uncertain either way (`uncertain_verdicts`) and the images so far (both models) do not
    exceed `max_images` per erased concept, as many images again are drawn for the open verdicts only and pooled.
    The budget grows with the concepts because the first draw does: a fixed one would leave a request erasing
    several concepts with the first draw only, each concept's verdict on a dozen images. `settle_passes` False:
    only failures that could still pass draw more (`uncertain_verdicts(passes=False)`), for a check whose passes
    a larger sample settles afterwards anyway."""
    evidence, drawn, extensions = draw(0, 1, None), 1, 0
    budget = max_images * max(1, len(evidence.concepts))
    while ((open_verdicts := uncertain_verdicts(evidence, min_ua, min_retention, passes=settle_passes))
           and evidence.images <= budget):
        evidence = pool_evidence(evidence, draw(extensions + 1, drawn, set(open_verdicts)))
        drawn, extensions = drawn * 2, extensions + 1
    return evidence, extensions
