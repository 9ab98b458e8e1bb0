"""What a finished erasure job stores as its request's `metrics` (and `ErasureOut.metrics` serves): the
engine's typed metrics (core.spare.report.EngineMetrics), the rounds it took, the verification checks with the
thresholds in force, and the time spent judging.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.spare.report import EngineMetrics, ErasureReport, RoundsOutcome


class VerificationCheck(BaseModel):
    """One verification check: the measured value, the threshold in force (`min` or `max`), the outcome."""

    model_config = ConfigDict(extra="allow")

    value: float
    min: float | None = None
    max: float | None = None
    passed: bool
    evidence: Literal["image", "noise-space", "training-wording"] | None = Field(
        default=None, description="`image`: a judge's verdict on held-out images (the only kind that can pass a job).")
    interval: list[float] | None = Field(default=None, description="95 % interval of the value (image checks).")
    images: int | None = Field(default=None, description="Held-out images behind the value (image checks).")


class AppliedThresholds(BaseModel):
    min_unlearning_accuracy: float
    min_retention: float
    min_gap_closure: float | None  # None: reported, not checked
    max_retain_drift: float


class JudgingTime(BaseModel):
    seconds: float = Field(description="Drawing and judging the held-out images.")
    erasure_seconds: float = Field(description="Everything else the engine did.")
    share_of_erasure: float


class ErasureMetrics(EngineMetrics):
    """The engine's metrics plus the job's verdict. Members a later version no longer writes are kept."""

    model_config = ConfigDict(extra="allow")

    rounds: RoundsOutcome | None = Field(default=None, description="Erase until verified: the rounds it took.")
    verification: dict[str, VerificationCheck] | None = Field(
        default=None, description="Each check by name; a request only succeeds when all passed and at least one "
        "is a judge's verdict on held-out images (`evidence: image`)."
    )
    thresholds: AppliedThresholds | None = None
    judging: JudgingTime | None = None

    @classmethod
    def of(cls, report: ErasureReport, checks: dict[str, dict[str, Any]], thresholds: Any) -> ErasureMetrics:
        """The stored metrics of a job whose engine wrote `report` and whose verification gave `checks`."""
        rounds = report.rounds
        return cls.model_validate({
            **report.metrics.model_dump(exclude_unset=True),
            "rounds": RoundsOutcome(chosen=rounds.chosen, passed=rounds.passed, history=rounds.history,
                                    surrogates=rounds.surrogates)
            if rounds is not None else None,
            "verification": checks,
            "thresholds": asdict(thresholds),
            "judging": judging_time(report),
        })

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)

    def rounds_note(self) -> str:
        if self.rounds is None or len(self.rounds.history) < 2:
            return ""
        return f" (best of {len(self.rounds.history)} rounds: round {self.rounds.chosen})"


def judging_time(report: ErasureReport) -> JudgingTime | None:
    """Seconds spent judging and their share of the erasure's own time (everything else the engine did)."""
    judge = report.metrics.judge
    total = report.timings_s.get("total")
    if judge is None or not total:
        return None
    own = max(float(total) - judge.seconds, 1e-9)
    return JudgingTime(seconds=round(judge.seconds, 3), erasure_seconds=round(own, 3),
                       share_of_erasure=round(judge.seconds / own, 4))
