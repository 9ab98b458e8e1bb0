"""When a sample is large enough: the verdicts a larger sample could still turn (torch-free, model-free).

The judge's held-out evidence (`core.evaluation.evidence.sequential_evidence`) and the canvas grid's
diagnostics (`core.evaluation.metrics.evaluate(settle=…)`) both draw more images while one of their verdicts is
open, by this one rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.evaluation.metrics_schema import TargetMetrics

Verdict = tuple[str, float, tuple[float, float]]  # (name, estimate, 95 % interval)


def unsettled(verdicts: Sequence[Verdict], threshold: float, *, passes: bool = True) -> list[str]:
    """Of one decision's verdicts (all at `threshold`), those a larger sample could still turn: none once one of
    them fails clearly (its whole interval below); else each whose estimate and interval lie on both sides of the
    threshold (`passes` False: only failures that could still pass)."""
    if any(value < threshold and high < threshold for _, value, (_, high) in verdicts):
        return []
    return [name for name, value, (low, high) in verdicts
            if (value < threshold <= high) or (passes and low < threshold <= value)]


@dataclass(frozen=True)
class GridSettling:
    """Further seeds for the canvas grid while one of its verdicts could still turn, as the judge's held-out
    sample does: each target's UA at `min_ua`, its IRA/CRA relative to the base at `min_retention`. A grid of a
    few seeds per cell passes a round near a threshold or not by the draw, and a loop that keeps the first round
    to pass would keep the lucky draws. `seeds` are drawn in order, each time as many as all the seeds drawn
    before (the sample doubles), until no verdict is open or they run out."""

    min_ua: float
    min_retention: float
    seeds: tuple[int, ...]

    def open_verdicts(self, targets: Sequence[TargetMetrics]) -> list[str]:
        ua = [(f"ua:{t.forget}", t.ua, t.ua_interval) for t in targets if t.ua_interval is not None]
        kept = [(f"{what}:{t.forget}", value, interval) for t in targets
                for what, value, interval in (("ira_rel", t.ira_rel, t.ira_rel_interval),
                                              ("cra_rel", t.cra_rel, t.cra_rel_interval))
                if value is not None and interval is not None]
        return unsettled(ua, self.min_ua) + unsettled(kept, self.min_retention)
