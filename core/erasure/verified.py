"""What erase-until-verified needs besides the engine, assembled once: workers, `lethe erase` and the benchmarks
all get it here, so that a benchmark verifies a round exactly as a job does.

The chain: the surrogate screen and the round check (`judging.verified_rounds`) → for a model version, every
concept it lost before joins the judged ones (`lineage.with_lineage`) → the final verification's evidence, the
judge's held-out images plus the folder's grid diagnostics (`judging.job_evaluator`) → for a version, retention
judged against its source v1 (`lineage.against_source`) → the verification rule as the loop's acceptance and
as the model card's checks (`verification.verify`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings
from core.erasure.judging import acceptance, grid_diagnostics, job_evaluator, verified_rounds
from core.erasure.lineage import against_source, erased_targets, with_lineage
from core.erasure.verification import Thresholds, Verdict, verify
from core.evaluation.settling import GridSettling
from core.spare.evaluator import Evaluator


def verification_grid_seeds(settings: Settings) -> list[int]:
    """The seeds per cell of the grid a worker's verification draws (its diagnostics): 0..LETHE_VERIFY_GRID_SEEDS-1."""
    return list(range(settings.verify_grid_seeds))


# The grid's further seeds (while a verdict could still turn) start here, away from the seeds that follow its
# first draw: a benchmark scores the round the loop kept on those (bench/erasure.py --eval-seed-start).
GRID_SETTLING_SEED0 = 100


def grid_settling(settings: Settings, thresholds: Thresholds, first: Sequence[int]) -> GridSettling:
    """The verification grid's further seeds after a first draw on `first`: up to LETHE_VERIFY_GRID_MAX_SEEDS per
    cell in all, judged at the verification's thresholds."""
    further = max(0, settings.verify_grid_max_seeds - len(first))
    return GridSettling(min_ua=thresholds.min_unlearning_accuracy, min_retention=thresholds.min_retention,
                        seeds=tuple(range(GRID_SETTLING_SEED0, GRID_SETTLING_SEED0 + further)))


@dataclass(frozen=True)
class VerifiedErasure:
    spec: Any  # the request as the engine trains it: screened surrogates
    screened: list[Any]  # the surrogate screen's records
    check: Any  # each round's cheap held-out check
    switch: Any  # another surrogate for a target whose surrogate took a round's lost images
    evaluator: Evaluator  # the final verification's evidence
    targets: list[str]  # every concept the verification judges: the request's, then those the version lost before
    thresholds: Thresholds

    def verify(self, metrics: Any) -> Verdict:
        return verify(metrics, self.thresholds, self.targets)

    def accept(self) -> Callable[[Any], Any]:
        """The loop's acceptance rule: the verification a job applies to a passing round."""
        return acceptance(self.thresholds, self.targets)

    def loop_inputs(self) -> dict[str, Any]:
        """`erase_until_verified`'s keyword arguments that come from the verification."""
        return {"check": self.check, "evaluator": self.evaluator, "screened": self.screened, "switch": self.switch,
                "accept": self.accept(), "verifier": lambda metrics: self.verify(metrics).checks}


def verified_erasure(base: Any, model_dir: Path, requested: Any, spec: Any, config: Any, settings: Settings, *,
                     judge_name: str, fingerprint: str | None, thresholds: Thresholds,
                     lineage: Sequence[dict[str, Any]] = (), source: Callable[[], Any] | None = None,
                     grid_seeds: Sequence[int] | None = None, attacks: bool = True,
                     progress: Callable[[str, float], None] | None = None) -> VerifiedErasure:
    """`base`: the pipeline the rounds train (a model, or one of its versions); `model_dir`: the source folder
    (language, judge, grid classifier); `requested`: the request before `fit_request` (its named surrogates are
    kept), `spec`: after it. `lineage`: the concepts `base` lost before ({"target", "kind", "surrogate"} each);
    `source`: loads v1, the retention baseline of a version's verification (needed with a lineage).
    `grid_seeds`, `attacks`: the grid diagnostics' first seeds (None: settings.verify_grid_seeds, as workers
    verify; further ones while a grid verdict could still turn: `grid_settling`) and whether they run the attack
    probe."""
    erased = erased_targets(lineage)
    spec, screened, check, switch = verified_rounds(base, model_dir, requested, spec, config, settings,
                                                    judge_name=judge_name, fingerprint=fingerprint,
                                                    thresholds=thresholds, erased=erased, progress=progress)
    judged = with_lineage(spec, list(lineage))
    targets = [c.target for c in judged.concepts]
    seeds = verification_grid_seeds(settings) if grid_seeds is None else grid_seeds
    diagnostics = grid_diagnostics(model_dir, targets, seeds=seeds, attacks=attacks, rest_only=bool(lineage),
                                   settle=grid_settling(settings, thresholds, seeds))
    evaluator = job_evaluator(model_dir, judged, config, settings, judge_name=judge_name, fingerprint=fingerprint,
                              progress=progress, thresholds=thresholds, diagnostics=diagnostics)
    if lineage:
        if source is None:
            raise ValueError("a version's verification judges retention against its source: pass `source`")
        evaluator = against_source(evaluator, source, min_retention=thresholds.min_retention)
    return VerifiedErasure(spec, screened, check, switch, evaluator, targets, thresholds)
