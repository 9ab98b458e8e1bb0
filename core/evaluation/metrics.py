"""Proof of forgetting on the testbed: the UnlearnCanvas answer grid judged by the testbed's classifier.

For each forgotten concept (an object or a style):
- UA  = share of images prompted with the concept that are NOT classified as it (higher = more forgotten);
- IRA = accuracy on the other concepts of the same kind (objects when an object is forgotten);
- CRA = accuracy of the other kind (styles when an object is forgotten), on images not prompted with the concept;
- *_rel = the same accuracy divided by the base pipeline's on the same seeds (1.0 = untouched).
Plus per-concept accuracies, a Fréchet distance in the classifier's feature space (FID analogue), images, seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from pydantic import BaseModel

from core.evaluation.adherence import adherence_from_predictions, grid_prompts
from core.evaluation.evidence import relative_interval, wilson
from core.evaluation.metrics_schema import Kind, Metrics, TargetMetrics
from core.evaluation.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, generate
from core.evaluation.settling import GridSettling
from core.testbed.canvas import OBJECTS, STYLES, render_batch
from core.testbed.classifier import Classifier

DEFAULT_SEEDS: tuple[int, ...] = tuple(range(8))
ProgressFn = Callable[[str, int, int], None]


class GridResult(BaseModel):
    """Classifier verdicts for one pipeline over the grid (kept to compare pipelines on the same seeds)."""

    objs: list[int]
    styles: list[int]
    pred_obj: list[int]
    pred_style: list[int]
    features_mean: list[float]
    seconds: float
    seeds: list[int] = []  # each image's seed, in grid order

    def pooled(self, more: GridResult) -> GridResult:
        """One grid from two draws on other seeds: the cells of both, the features' mean weighted by images."""
        n, m = len(self.objs), len(more.objs)
        mean = [(a * n + b * m) / (n + m) for a, b in zip(self.features_mean, more.features_mean, strict=True)]
        return GridResult(objs=self.objs + more.objs, styles=self.styles + more.styles,
                          pred_obj=self.pred_obj + more.pred_obj, pred_style=self.pred_style + more.pred_style,
                          features_mean=mean, seconds=self.seconds + more.seconds, seeds=self.seeds + more.seeds)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return np.array(self.objs), np.array(self.styles), np.array(self.pred_obj), np.array(self.pred_style)


def concept_kind(name: str) -> Kind:
    """'object' or 'style' for a testbed concept name; a clear error for anything else."""
    if name in OBJECTS:
        return "object"
    if name in STYLES:
        return "style"
    raise ValueError(f"unknown concept {name!r}; objects: {', '.join(OBJECTS)}; styles: {', '.join(STYLES)}")


def sampling_defaults(testbed: Path | None = None) -> tuple[int, float]:
    """(steps, guidance) a testbed's grid is drawn with: what its build measured its adherence with (its
    manifest.json, found in `testbed` or beside it: a testbed's classifier/ or pipeline/ folder may be given).
    None: the default testbed's. Library defaults where there is no manifest (a model folder that is no testbed):
    a grid is never drawn with another model's settings."""
    from core.testbed.loading import load_manifest
    from core.testbed.paths import testbed_dir, testbed_of

    found = testbed_of(Path(testbed) if testbed is not None else testbed_dir())
    if found is None:
        return DEFAULT_STEPS, DEFAULT_GUIDANCE
    s = load_manifest(found).get("sampling", {})
    return int(s.get("steps", DEFAULT_STEPS)), float(s.get("guidance_scale", DEFAULT_GUIDANCE))


def _to_unit(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N×D each)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    # tr(sqrt(ca cb)) via the symmetric form sqrt(ca)^½ cb sqrt(ca)^½, whose eigenvalues are real and >= 0.
    ev, evec = torch.linalg.eigh(ca)
    sqrt_ca = evec @ torch.diag(ev.clamp_min(0).sqrt()) @ evec.T
    mid = torch.linalg.eigvalsh(sqrt_ca @ cb @ sqrt_ca).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + ca.trace() + cb.trace() - 2 * mid)


def _run_grid(
    pipeline: StableDiffusionPipeline,
    classifier: Classifier,
    seeds: Sequence[int],
    steps: int,
    guidance_scale: float,
    progress: ProgressFn | None,
    label: str,
) -> tuple[GridResult, torch.Tensor]:
    t0 = time.perf_counter()
    prompts, all_seeds, objs, styles = grid_prompts(seeds)
    cb = (lambda done, total: progress(label, done, total)) if progress else None
    images = generate(pipeline, prompts, all_seeds, steps=steps, guidance_scale=guidance_scale, progress=cb)
    x = _to_unit(images)
    po, ps = classifier.predict(x)
    feats = classifier.features(x)
    res = GridResult(
        objs=objs,
        styles=styles,
        pred_obj=po.tolist(),
        pred_style=ps.tolist(),
        features_mean=feats.mean(0).tolist(),
        seconds=time.perf_counter() - t0,
        seeds=all_seeds,
    )
    return res, feats


# (id of the base pipeline, id of the classifier, seeds, steps, guidance) -> (that pipeline, its verdicts)
BaseGridMemo = dict[tuple[int, int, tuple[int, ...], int, float], tuple[Any, GridResult]]


@lru_cache(maxsize=8)
def _base_grid_cached(
    testbed: str, seeds: tuple[int, ...], steps: int, guidance_scale: float
) -> tuple[GridResult, torch.Tensor]:
    """The shipped base pipeline's verdicts, computed once per process per (testbed, seeds, steps, guidance)."""
    from core.testbed.loading import load_classifier, load_pipeline

    return _run_grid(
        load_pipeline(Path(testbed)), load_classifier(Path(testbed)), seeds, steps, guidance_scale, None, "base"
    )


def base_grid(testbed: Path, seeds: Sequence[int]) -> GridResult:
    """A testbed's shipped base pipeline's verdicts on the grid at its own sampling (cached per process)."""
    steps, guidance_scale = sampling_defaults(testbed)
    return _base_grid_cached(str(testbed), tuple(int(s) for s in seeds), steps, guidance_scale)[0]


@dataclass(frozen=True)
class _Counts:
    own: int  # the target's own cells
    not_shown: int  # of them, not classified as the target
    rest: int  # the cells retention is measured on
    same_kind: int  # of them, the concept of the target's kind classified right (IRA)
    other_kind: int  # of them, the concept of the other kind classified right (CRA)


def _counts(name: str, kind: Kind, grid: GridResult,
            forgotten: tuple[list[int], list[int]] | None = None) -> _Counts:
    """One forgotten concept's cells on a grid. `forgotten` (object and style indices of every concept the model
    has lost): retention counts only the cells that show none of them, the rest of the grid."""
    objs, styles, po, ps = grid.arrays()
    rest = np.ones(objs.shape, dtype=bool)
    if forgotten is not None:
        rest = ~np.isin(objs, forgotten[0]) & ~np.isin(styles, forgotten[1])
    if kind == "object":
        c = OBJECTS.index(name)
        mine, other = objs == c, (objs != c) & rest
        shown, same, cross = po[mine] == c, po[other] == objs[other], ps[other] == styles[other]
    else:
        c = STYLES.index(name)
        mine, other = styles == c, (styles != c) & rest
        shown, same, cross = ps[mine] == c, ps[other] == styles[other], po[other] == objs[other]
    return _Counts(own=int(mine.sum()), not_shown=int((~shown).sum()), rest=int(other.sum()),
                   same_kind=int(same.sum()), other_kind=int(cross.sum()))


def _share(k: int, n: int) -> float:
    return k / n if n else float("nan")


def _rel(x: float, base: float) -> float | None:
    return x / base if base > 0 else None


def target_metrics(name: str, kind: Kind, grid: GridResult, base_grid: GridResult,
                   forgotten: tuple[list[int], list[int]] | None = None) -> TargetMetrics:
    """UA, IRA, CRA of one forgotten concept on `grid`, relative to `base_grid` (the same cells), with the images
    behind them and their 95 % intervals."""
    n, b = _counts(name, kind, grid, forgotten), _counts(name, kind, base_grid, forgotten)
    ira, cra = _share(n.same_kind, n.rest), _share(n.other_kind, n.rest)
    b_ira, b_cra = _share(b.same_kind, b.rest), _share(b.other_kind, b.rest)
    return TargetMetrics(
        forget=name, kind=kind, ua=_share(n.not_shown, n.own), ira=ira, cra=cra,
        ira_rel=_rel(ira, b_ira), cra_rel=_rel(cra, b_cra), base_ua=_share(b.not_shown, b.own),
        images_forget=n.own, images_rest=n.rest,
        ua_interval=wilson(n.not_shown, n.own) if n.own else None,
        ira_rel_interval=relative_interval(n.same_kind, n.rest, b_ira) if n.rest else None,
        cra_rel_interval=relative_interval(n.other_kind, n.rest, b_cra) if n.rest else None,
    )


def evaluate(
    pipeline: StableDiffusionPipeline,
    forget: Sequence[str],
    kind: Kind | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    steps: int | None = None,
    guidance_scale: float | None = None,
    base_pipeline: StableDiffusionPipeline | None = None,
    classifier: Classifier | None = None,
    progress: ProgressFn | None = None,
    attacks: bool = False,
    attack_budget: int = 30,
    rest_only: bool = False,
    base_testbed: Path | None = None,
    base_memo: BaseGridMemo | None = None,
    settle: GridSettling | None = None,
) -> Metrics:
    """Generate the answer grid with `pipeline` (and the base, for *_rel) and score each forgotten concept.

    `kind` may be omitted (each name's kind is looked up); if given, every name must be of that kind.
    `rest_only`: IRA/CRA over the cells that show none of the forgotten concepts (a model that lost several,
    of both kinds: a lineage of erasures), instead of every cell but the target's.
    The base defaults to the testbed's own pipeline (its verdicts are cached per process): `base_testbed`'s, else
    the default testbed's. `base_memo`: verdicts of `base_pipeline` an earlier call drew (one caller evaluating
    several erasures of the same base weights); what this call draws of it is added. `settle`: while a target's
    verdict at its thresholds could still turn, both models draw the grid on further seeds and every number is
    taken over all the seeds drawn (`Metrics.seeds`, `Metrics.extensions`); the attack probe runs once, after.
    """
    from core.testbed.loading import load_classifier
    from core.testbed.paths import testbed_dir

    t0 = time.perf_counter()
    if steps is None or guidance_scale is None:  # the default testbed's manifest, read only when it is needed
        d_steps, d_guidance = sampling_defaults()
        steps = steps if steps is not None else d_steps
        guidance_scale = guidance_scale if guidance_scale is not None else d_guidance
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("need at least one seed")
    kinds: list[Kind] = []
    for name in forget:
        k = concept_kind(name)
        if kind is not None and k != kind:
            raise ValueError(f"{name!r} is a {k}, not a {kind}")
        kinds.append(k)
    clf = classifier if classifier is not None else load_classifier()

    def draw(batch: tuple[int, ...]) -> tuple[GridResult, torch.Tensor, GridResult, int]:
        """Both models' verdicts on the grid's cells at `batch`, and how many images this drew."""
        grid, feats = _run_grid(pipeline, clf, batch, steps, guidance_scale, progress, "model")
        drew_base = base_pipeline is not None
        if base_pipeline is not None:
            key = (id(base_pipeline), id(clf), batch, steps, guidance_scale)
            if base_memo is not None and key in base_memo:
                base_grid, drew_base = base_memo[key][1], False
            else:
                base_grid, _ = _run_grid(base_pipeline, clf, batch, steps, guidance_scale, progress, "base")
                if base_memo is not None:
                    # The pipeline itself is held too, so that its id cannot pass to another object while the
                    # memo lives.
                    base_memo[key] = (base_pipeline, base_grid)
        else:
            misses = _base_grid_cached.cache_info().misses
            base_grid, _ = _base_grid_cached(str(base_testbed or testbed_dir()), batch, steps, guidance_scale)
            drew_base = _base_grid_cached.cache_info().misses > misses
        # Every image this call generated: the model grid, and the base grid unless a memo or the cache held it.
        return grid, feats, base_grid, len(grid.objs) + (len(base_grid.objs) if drew_base else 0)

    forgotten = None
    if rest_only:
        forgotten = ([OBJECTS.index(n) for n, k in zip(forget, kinds, strict=True) if k == "object"],
                     [STYLES.index(n) for n, k in zip(forget, kinds, strict=True) if k == "style"])

    def scored(grid: GridResult, base_grid: GridResult) -> list[TargetMetrics]:
        return [target_metrics(name, k, grid, base_grid, forgotten) for name, k in zip(forget, kinds, strict=True)]

    grid, feats, base_grid, n_images = draw(seeds)
    drawn, extensions = list(seeds), 0
    targets = scored(grid, base_grid)
    further = [s for s in (settle.seeds if settle is not None else ()) if s not in drawn]
    while settle is not None and further and settle.open_verdicts(targets):
        batch, further = tuple(further[: len(drawn)]), further[len(drawn):]
        more, more_feats, more_base, more_images = draw(batch)
        grid, base_grid = grid.pooled(more), base_grid.pooled(more_base)
        feats, drawn, extensions = torch.cat([feats, more_feats]), drawn + list(batch), extensions + 1
        n_images += more_images
        targets = scored(grid, base_grid)

    objs, styles, po, ps = grid.arrays()
    model = adherence_from_predictions(po, ps, objs, styles, seconds=grid.seconds)
    bo, bs, bpo, bps = base_grid.arrays()
    base = adherence_from_predictions(bpo, bps, bo, bs, seconds=base_grid.seconds)

    real = render_batch(
        [(OBJECTS[o], STYLES[s]) for o, s in zip(objs, styles, strict=True)], [1_000 + s for s in grid.seeds]
    )
    fid = frechet_distance(feats, clf.features(_to_unit(real)))

    for tm in targets if attacks else ():
        from core.evaluation.attacks import attack_success

        res = attack_success(
            pipeline, tm.forget, tm.kind, clf, steps=steps, guidance_scale=guidance_scale, budget=attack_budget
        )
        tm.attack_success = res.attack_success
        tm.attack_detail = res.detail()
        tm.attack_budget = res.budget
        n_images += res.paraphrase_images + res.synonym_images + res.adversarial_images

    return Metrics(
        model=model,
        base=base,
        targets=targets,
        fid_analogue=fid,
        steps=steps,
        guidance_scale=guidance_scale,
        seeds=drawn,
        extensions=extensions,
        images=n_images,
        seconds=time.perf_counter() - t0,
    )

