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

The neighbourhood (`Screening.max_tangle`): an erasure draws the surrogate where the concept was asked for, and
what it changes to do so reaches the concepts the base model already mixes up with the surrogate. A surrogate
whose images the judge often labels as a concept that must stay, or whose kept neighbours' images it labels as
the surrogate, sits on a boundary the base model barely holds; training toward it moves that boundary and the
neighbour's images cross it (measured: a heart erased toward a circle that the base draws square one time in
three lost the circles to "square"; toward a triangle, whose neighbours the base keeps apart, it did not).
`tangled` is the worst such pair's share of crossing images (both concepts' base images, both directions); a
vocabulary-picked surrogate above the allowance beyond sampling noise (as for its confusion: the share's 95 %
interval lies above it) is replaced like a confused one, by the first declared candidate within both
allowances, else the one least tangled among those within the confusion allowance. A few crossing images in
sixteen are what a boundary the base model holds well also shows: on the development build of seed 23, striped's
best surrogate (checkered: toward it one round met every target, bench/results/surrogates_dev_seed23.json)
crosses with solid in 3 of 16 base images (bench/results/erasure_dev_nearest.json). The
base images of each declared concept are drawn once per screening and shared by every candidate's measure.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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


def labelled(base: Any, judge: Judge, vocabulary: Vocabulary, *, kind: str, concept: str, labels: Sequence[str],
             images: int, steps: int, guidance_scale: float, seed: int) -> tuple[Counter[str], int]:
    """(what the judge labels the base model's images of `concept`, among `labels`: a count per label; images
    drawn): its held-out phrasings that fit the model's context, `images` seeds from `seed`."""
    vocab = vocabulary.with_concepts(kind, [concept])
    phrasings = untruncated(vocab.heldout_prompts(kind, concept), getattr(base, "tokenizer", None))
    if not phrasings or images <= 0:
        return Counter(), 0
    prompts = [phrasings[i % len(phrasings)] for i in range(images)]
    seeds = [seed + i for i in range(images)]
    drawn = generate(base, prompts, seeds, steps=steps, guidance_scale=guidance_scale)
    verdicts = judge.classify(drawn, kind, list(labels))
    return Counter(str(v) for v in verdicts), len(verdicts)


@dataclass(frozen=True)
class ScreenSampling:
    """How the base model's images of a candidate surrogate are drawn: `images` per candidate (held-out
    phrasings), sampling steps and guidance as the judge's evidence uses them, the first seed."""

    images: int = 8
    steps: int = 10
    guidance_scale: float = 5.0
    seed: int = 600_000


@dataclass
class Screening:
    """What measuring a candidate surrogate needs: the base model and the job's judge, the model folder's
    vocabulary (the candidates, in its order), the largest share of a candidate's images the judge may label as
    the target (`max_confusion`), the largest share of images crossing the boundary between a candidate and a
    concept that must stay (`max_tangle`; None: the neighbourhood is not measured), how the images are drawn,
    and concepts besides the spec's targets that may not become a surrogate (`avoid`: e.g. concepts earlier
    versions erased). The base model's labelled images are kept per (kind, concept) for every later measure."""

    base: Any
    judge: Judge
    vocabulary: Vocabulary
    max_confusion: float
    avoid: Sequence[str] = ()
    sampling: ScreenSampling = field(default_factory=ScreenSampling)
    max_tangle: float | None = None
    order: Literal["vocabulary", "nearest"] = "vocabulary"  # nearest: by the base's noise-space gap to the target
    _rows: dict[tuple[str, tuple[str, ...], str], tuple[Counter[str], int]] = field(
        default_factory=dict, init=False, repr=False)
    _gaps: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict, init=False, repr=False)

    def row(self, kind: str, labels: tuple[str, ...], concept: str) -> tuple[Counter[str], int]:
        """The judge's labels of the base model's images of `concept` (drawn once; each concept its own seeds)."""
        key = (kind, labels, concept)
        if key not in self._rows:
            sampling = self.sampling
            self._rows[key] = labelled(self.base, self.judge, self.vocabulary, kind=kind, concept=concept,
                                       labels=labels, images=sampling.images, steps=sampling.steps,
                                       guidance_scale=sampling.guidance_scale,
                                       seed=sampling.seed + 1000 * labels.index(concept))
        return self._rows[key]

    def measurer(self, spec: ErasureSpec, kind: str, target: str) -> Measure:
        """measure(candidate) -> (its record, images the judge labelled `target`): the candidate's confusion with
        `target` and, with `max_tangle` set, its worst boundary with a concept that must stay (every declared
        concept of the kind not being erased)."""
        labels = tuple(self.vocabulary.with_concepts(kind, [target]).concepts[kind])
        erased = {c.target for c in spec.concepts} | set(self.avoid)

        def measure(candidate: str) -> tuple[SurrogateTried, int]:
            names = labels if candidate in labels else (*labels, candidate)
            own, n = self.row(kind, names, candidate)
            hits = own.get(target, 0)
            tangled, tangled_with, tangle_images = None, None, None
            if self.max_tangle is not None and n:
                for kept in names:
                    if kept in erased or kept in (candidate, target):
                        continue
                    theirs, m = self.row(kind, names, kept)
                    share = (own.get(kept, 0) + theirs.get(candidate, 0)) / (n + m) if n + m else 0.0
                    if tangled is None or share > tangled:
                        tangled, tangled_with, tangle_images = round(share, 4), kept, n + m
            return SurrogateTried(surrogate=candidate, confused=round(hits / n, 4) if n else 0.0, images=n,
                                  tangled=tangled, tangled_with=tangled_with, tangle_images=tangle_images), hits

        return measure

    def within(self, tried: SurrogateTried) -> bool:
        """Both allowances met: the candidate is told from the target and keeps apart from its neighbours."""
        return tried.confused <= self.max_confusion and not self.too_tangled(tried)

    def too_tangled(self, tried: SurrogateTried) -> bool:
        return self.max_tangle is not None and tried.tangled is not None and tried.tangled > self.max_tangle

    def drops_pick(self, tried: SurrogateTried) -> bool:
        """Whether the folder's pick is replaced: confused with the target, or tangled with a kept neighbour,
        above its allowance beyond sampling noise (the share's 95 % interval lies above the allowance). At the
        default allowances (0.10) two confused images in eight do not drop a pick, three do; three crossing
        images in sixteen do not, four do."""
        if beyond_noise(tried.confused, tried.images, self.max_confusion):
            return True
        return (self.max_tangle is not None and tried.tangled is not None
                and beyond_noise(tried.tangled, tried.tangle_images or 0, self.max_tangle))

    def rank(self, tried: SurrogateTried) -> tuple[bool, float, float]:
        """Better first: within the confusion allowance, then least tangled, then least confused."""
        return (tried.confused > self.max_confusion, tried.tangled or 0.0, tried.confused)

    def alternatives(self, spec: ErasureSpec, kind: str, target: str, used: set[str]) -> list[str]:
        """The declared concepts of `kind` after `target` in the vocabulary's order (wrapping) — nearest first
        by the noise-space gap with `order` "nearest" — minus surrogates already used and anything being erased
        (the spec's targets, `avoid`)."""
        names = self.vocabulary.concepts.get(kind, [])
        start = names.index(target) + 1 if target in names else 0
        erased = {c.target for c in spec.concepts} | set(self.avoid)
        out = [n for n in names[start:] + names[:start] if n not in erased and n not in used and n != target]
        if self.order == "nearest" and out:
            gaps = self.gaps(kind, target)
            out.sort(key=lambda n: gaps.get(n, float("inf")))
        return out

    def gaps(self, kind: str, target: str) -> dict[str, float]:
        """The base model's noise-space gap from `target` to every other declared concept of `kind` (measured
        once per screening)."""
        from core.evaluation.surrogate_gap import noise_gaps

        key = (kind, target)
        if key not in self._gaps:
            others = [n for n in self.vocabulary.concepts.get(kind, []) if n != target]
            self._gaps[key] = noise_gaps(self.base, self.vocabulary, kind=kind, target=target, candidates=others,
                                         steps=self.sampling.steps, guidance_scale=self.sampling.guidance_scale)
        return self._gaps[key]


def beyond_noise(share: float, images: int, allowance: float) -> bool:
    """A share of `images` (a count of them, rounded back from the share) above `allowance` beyond sampling
    noise: its 95 % Wilson interval lies wholly above it. With no images, the share itself decides."""
    if share <= allowance:
        return False
    return images <= 0 or wilson(round(share * images), images)[0] > allowance


def screen_surrogates(screening: Screening, spec: ErasureSpec, *, named: set[str],
                      progress: ProgressFn | None = None) -> tuple[ErasureSpec, list[SurrogateScreen]]:
    """The spec with every vocabulary-picked surrogate the judge confuses with its target (share above
    `screening.max_confusion`) or finds tangled with a kept neighbour (above `screening.max_tangle`) replaced
    by the first declared alternative within both allowances (else the best ranked); a record per concept.
    `named`: targets whose surrogate the request gave (measured, never replaced)."""
    concepts = []
    records: list[SurrogateScreen] = []
    for ci, concept in enumerate(spec.concepts):
        started = time.perf_counter()
        kind, target = concept.kind, concept.target
        measure = screening.measurer(spec, kind, target)
        current = concept.surrogate
        if current is None:  # the engine's neutral word: nothing the judge's label space knows
            records.append(SurrogateScreen(concept=target, kind=kind, chosen=None, named=target in named,
                                           tried=[], switched=False, seconds=0.0))
            concepts.append(concept)
            continue
        if screening.order == "nearest" and target not in named:
            # Nearest first: the folder's pick is one candidate among the others.
            found, tried = _search(screening, measure, screening.alternatives(spec, kind, target, set()))
            chosen = found or measure(current)[0]
        else:
            first, _ = measure(current)
            tried = [first]
            chosen = first
            if target not in named and screening.drops_pick(first):
                found, more = _search(screening, measure, screening.alternatives(spec, kind, target, {current}),
                                      best=first)
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
    order after the target) that is not in `used` (surrogates already tried), not being erased, not confused
    with the target beyond `screening.max_confusion` on the base model's images and not tangled with a kept
    neighbour beyond `screening.max_tangle` (when every candidate is tangled, the least tangled) -> (spec,
    record), or (None, record) when every candidate left is confused with the target.
    Erase-until-verified calls it when a round's retention losses became its surrogate."""
    started = time.perf_counter()
    concept = next(c for c in spec.concepts if c.target == target)
    measure = screening.measurer(spec, concept.kind, target)
    found, tried = _search(screening, measure, screening.alternatives(spec, concept.kind, target, used))
    if found is not None and found.confused > screening.max_confusion:
        # Every candidate left is confused with the target: keep the surrogate the round had. One that is only
        # tangled is still taken (the least tangled, as the screen takes one): the round measured its surrogate
        # spreading, where the screen's crossings only say a candidate might.
        found = None
    record = SurrogateScreen(concept=target, kind=concept.kind, chosen=found.surrogate if found else None,
                             named=False, tried=tried, switched=found is not None,
                             seconds=round(time.perf_counter() - started, 3))
    if found is None:
        return None, record
    concepts = [c.model_copy(update={"surrogate": found.surrogate}) if c.target == target else c
                for c in spec.concepts]
    return spec.model_copy(update={"concepts": concepts}), record


def _search(screening: Screening, measure: Measure, candidates: list[str],
            best: SurrogateTried | None = None) -> tuple[SurrogateTried | None, list[SurrogateTried]]:
    """Candidates measured in order until one is within both allowances -> (the best ranked of `best` and
    those measured, the records measured)."""
    tried: list[SurrogateTried] = []
    for candidate in candidates:
        tried.append(measure(candidate)[0])
        if best is None or screening.rank(tried[-1]) < screening.rank(best):
            best = tried[-1]
        if screening.within(best):
            break
    return best, tried
