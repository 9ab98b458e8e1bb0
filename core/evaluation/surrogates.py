"""Is a surrogate something the judge can tell from the concept? Screened on the base model before training.

An erasure teaches the model to draw the surrogate where the concept was asked for, so the share of the base
model's surrogate images that the judge labels as the concept bounds what the erasure can reach: a surrogate
drawn as the concept one time in three caps UA near 0.67 whatever the training does (and no round of more
capacity, anchoring or steps can lift it). Screening costs a handful of base-model images per concept.

A surrogate the request named is measured and reported but kept: the requester chose what the concept turns
into. A surrogate the model folder's vocabulary picked is replaced, when its confusion is above what the UA
threshold allows beyond sampling noise (the 95 % interval's lower end), by the declared concept of the same
kind that the judge confuses least with the target (screened in the vocabulary's order, stopping at the first
one within the allowance).

After a round, erase-until-verified may switch a vocabulary-picked surrogate once more (`switch_surrogate`):
when the images the round took from concepts that must stay became its surrogate, the surrogate is spreading
over its neighbours, and the next declared candidate within the allowance replaces it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.evaluation.evidence import wilson
from core.evaluation.judges.base import Judge
from core.evaluation.sampling import generate
from core.evaluation.vocabulary import Vocabulary
from core.spare.prompting import untruncated
from core.spare.report import SurrogateScreen, SurrogateTried
from core.spare.specs import ErasureSpec

ProgressFn = Callable[[float], None]
# measure(candidate) -> (its record, images the judge labelled as the target)
Measure = Callable[[str], tuple[SurrogateTried, int]]


def confusion(base: Any, judge: Judge, vocabulary: Vocabulary, *, kind: str, target: str, surrogate: str,
              images: int, steps: int, guidance_scale: float, seed: int) -> tuple[int, int]:
    """(images the judge labels as `target`, images drawn): the base model's images of `surrogate` (its held-out
    phrasings that fit the model's context, `images` seeds), judged among the same candidate labels the
    verification uses."""
    vocab = vocabulary.with_concepts(kind, [target, surrogate])
    phrasings = untruncated(vocab.heldout_prompts(kind, surrogate), getattr(base, "tokenizer", None))
    if not phrasings or images <= 0:
        return 0, 0
    prompts = [phrasings[i % len(phrasings)] for i in range(images)]
    seeds = [seed + i for i in range(images)]
    drawn = generate(base, prompts, seeds, steps=steps, guidance_scale=guidance_scale)
    verdicts = judge.classify(drawn, kind, vocab.concepts[kind])
    return sum(v == target for v in verdicts), len(verdicts)


@dataclass(frozen=True)
class ScreenSampling:
    """How the base model's images of a candidate surrogate are drawn: `images` per candidate (held-out
    phrasings), sampling steps and guidance as the judge's evidence uses them, the first seed."""

    images: int = 8
    steps: int = 10
    guidance_scale: float = 5.0
    seed: int = 600_000


@dataclass(frozen=True)
class Screening:
    """What measuring a candidate surrogate needs: the base model and the job's judge, the model folder's
    vocabulary (the candidates, in its order), the largest share of a candidate's images the judge may label as
    the target (`max_confusion`), how the images are drawn, and concepts besides the spec's targets that may not
    become a surrogate (`avoid`: e.g. concepts earlier versions erased)."""

    base: Any
    judge: Judge
    vocabulary: Vocabulary
    max_confusion: float
    avoid: Sequence[str] = ()
    sampling: ScreenSampling = ScreenSampling()

    def measurer(self, kind: str, target: str, index: int) -> Measure:
        """measure(candidate) -> (its record, images the judge labelled `target`); `index`: the concept's place
        in the spec (its own seeds, the same for the screen and a later switch)."""
        sampling = self.sampling

        def measure(candidate: str) -> tuple[SurrogateTried, int]:
            hits, n = confusion(self.base, self.judge, self.vocabulary, kind=kind, target=target,
                                surrogate=candidate, images=sampling.images, steps=sampling.steps,
                                guidance_scale=sampling.guidance_scale, seed=sampling.seed + 1000 * index)
            return SurrogateTried(surrogate=candidate, confused=round(hits / n, 4) if n else 0.0, images=n), hits

        return measure

    def alternatives(self, spec: ErasureSpec, kind: str, target: str, used: set[str]) -> list[str]:
        """The declared concepts of `kind` after `target` in the vocabulary's order (wrapping), minus surrogates
        already used and anything being erased (the spec's targets, `avoid`)."""
        names = self.vocabulary.concepts.get(kind, [])
        start = names.index(target) + 1 if target in names else 0
        erased = {c.target for c in spec.concepts} | set(self.avoid)
        return [n for n in names[start:] + names[:start] if n not in erased and n not in used and n != target]


def screen_surrogates(screening: Screening, spec: ErasureSpec, *, named: set[str],
                      progress: ProgressFn | None = None) -> tuple[ErasureSpec, list[SurrogateScreen]]:
    """The spec with every vocabulary-picked surrogate the judge confuses with its target (share above
    `screening.max_confusion`) replaced by the least confused declared alternative; a record per concept.
    `named`: targets whose surrogate the request gave (measured, never replaced)."""
    concepts = []
    records: list[SurrogateScreen] = []
    for ci, concept in enumerate(spec.concepts):
        started = time.perf_counter()
        kind, target = concept.kind, concept.target
        measure = screening.measurer(kind, target, ci)
        current = concept.surrogate
        if current is None:  # the engine's neutral word: nothing the judge's label space knows
            records.append(SurrogateScreen(concept=target, kind=kind, chosen=None, named=target in named,
                                           tried=[], switched=False, seconds=0.0))
            concepts.append(concept)
            continue
        first, hits = measure(current)
        tried = [first]
        chosen = first
        if target not in named and wilson(hits, first.images)[0] > screening.max_confusion:
            # Confused beyond sampling noise (the 95 % interval's lower end is above the allowance): one
            # confused image in eight is not enough to drop a surrogate; six are.
            found, more = _search(measure, screening.alternatives(spec, kind, target, {current}),
                                  screening.max_confusion, best=first)
            tried += more
            chosen = found or first
        records.append(SurrogateScreen(
            concept=target, kind=kind, chosen=chosen.surrogate, named=target in named, tried=tried,
            switched=chosen.surrogate != current, seconds=round(time.perf_counter() - started, 3),
        ))
        # The forget prompts name the target, not the surrogate: only the surrogate changes.
        concepts.append(concept.model_copy(update={"surrogate": chosen.surrogate}))
        if progress:
            progress((ci + 1) / len(spec.concepts))
    return spec.model_copy(update={"concepts": concepts}), records


def switch_surrogate(screening: Screening, spec: ErasureSpec, target: str, *,
                     used: set[str]) -> tuple[ErasureSpec | None, SurrogateScreen]:
    """`spec` with `target`'s surrogate replaced by the next declared concept of its kind (the vocabulary's
    order after the target) that is not in `used` (surrogates already tried), not being erased and not confused
    with the target beyond `screening.max_confusion` on the base model's images -> (spec, record), or
    (None, record) when no candidate is left. Erase-until-verified calls it when a round's retention losses
    became its surrogate."""
    started = time.perf_counter()
    ci, concept = next((i, c) for i, c in enumerate(spec.concepts) if c.target == target)
    measure = screening.measurer(concept.kind, target, ci)
    found, tried = _search(measure, screening.alternatives(spec, concept.kind, target, used),
                           screening.max_confusion)
    if found is not None and found.confused > screening.max_confusion:
        found = None  # every candidate left caps UA below the threshold: keep the surrogate the round had
    record = SurrogateScreen(concept=target, kind=concept.kind, chosen=found.surrogate if found else None,
                             named=False, tried=tried, switched=found is not None,
                             seconds=round(time.perf_counter() - started, 3))
    if found is None:
        return None, record
    concepts = [c.model_copy(update={"surrogate": found.surrogate}) if c.target == target else c
                for c in spec.concepts]
    return spec.model_copy(update={"concepts": concepts}), record



def _search(measure: Measure, candidates: list[str], max_confusion: float,
            best: SurrogateTried | None = None) -> tuple[SurrogateTried | None, list[SurrogateTried]]:
    """Candidates measured in order until one is confused no more than `max_confusion` -> (the least confused
    of `best` and those measured, the records measured)."""
    tried: list[SurrogateTried] = []
    for candidate in candidates:
        tried.append(measure(candidate)[0])
        if best is None or tried[-1].confused < best.confused:
            best = tried[-1]
        if best.confused <= max_confusion:
            break
    return best, tried
