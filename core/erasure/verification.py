"""The verification rule: an erasure succeeds only on image-level evidence from a judge on held-out prompts.

What passes: for every erased concept, UA (share of held-out images the judge does NOT label as the concept)
>= the UA threshold, and for every retention group (other concepts of the erased kind; other kinds) the erased
model's accuracy over the base model's >= the retention threshold. Evidence comes from the engine's typed metrics
(core.spare.report.EngineMetrics: `judge` is a JudgeEvidence), produced after training on prompts the
training never used.

What can only fail a job: the noise-space diagnostics (forget→surrogate gap closure, retain drift) and the
model classifier's grid metrics on training wordings. They are measured on what the erasure trained on, so
they grade the training objective by itself: a job with only these never passes.

Thresholds: the service minimum (Settings.verify_min_*); a request may raise them, never lower them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.config import Settings
from core.evaluation.evidence_schema import JudgeEvidence
from core.spare.report import EngineMetrics


@dataclass(frozen=True)
class Thresholds:
    min_unlearning_accuracy: float
    min_retention: float
    min_gap_closure: float | None  # None: reported, not checked
    max_retain_drift: float

    @classmethod
    def for_request(cls, settings: Settings, requested: dict[str, Any] | None = None) -> Thresholds:
        """Service minimums, raised (never lowered) by what the request asked for."""
        requested = requested or {}
        return cls(
            min_unlearning_accuracy=max(settings.verify_min_unlearning_accuracy,
                                        float(requested.get("min_unlearning_accuracy") or 0.0)),
            min_retention=max(settings.verify_min_retention, float(requested.get("min_retention") or 0.0)),
            min_gap_closure=settings.verify_min_gap_closure,
            max_retain_drift=settings.verify_max_retain_drift,
        )


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)


def _check(checks: dict[str, dict[str, Any]], name: str, value: float | None, *, minimum: float | None = None,
           maximum: float | None = None, evidence: str) -> None:
    if value is None:
        return
    passed = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    check: dict[str, Any] = {"value": round(float(value), 6), "passed": passed, "evidence": evidence}
    if minimum is not None:
        check["min"] = minimum
    if maximum is not None:
        check["max"] = maximum
    checks[name] = check


def _judge_checks(judge: JudgeEvidence, t: Thresholds, checks: dict[str, dict[str, Any]]) -> list[str]:
    """Image-level checks; returns the concepts without evidence (each erased concept needs its own)."""
    for c in judge.concepts:
        name = f"ua[{c.concept}]"
        _check(checks, name, c.ua, minimum=t.min_unlearning_accuracy, evidence="image")
        checks[name]["interval"] = list(c.ua_interval)
        checks[name]["images"] = c.images
    for r in judge.retention:
        name = f"retention[{r.group}:{r.kind}]"
        if r.retention is None:
            # The base model itself never draws these concepts recognisably: nothing to retain or lose.
            continue
        _check(checks, name, r.retention, minimum=t.min_retention, evidence="image")
        checks[name]["interval"] = list(r.retention_interval) if r.retention_interval is not None else None
        checks[name]["images"] = r.images
    return [c.concept for c in judge.concepts if not c.images]


def _diagnostic_checks(metrics: EngineMetrics, t: Thresholds, checks: dict[str, dict[str, Any]]) -> None:
    if metrics.probe is not None:
        _check(checks, "forget_gap_closure", metrics.probe.forget_gap_closure, minimum=t.min_gap_closure,
               evidence="noise-space")
        _check(checks, "retain_drift_relative", metrics.probe.retain_drift_relative, maximum=t.max_retain_drift,
               evidence="noise-space")
    for target, row in sorted((metrics.summary or {}).items()):
        for name, value, interval, images, minimum in (
            ("grid_ua", row.ua, row.ua_interval, row.images_forget, t.min_unlearning_accuracy),
            ("grid_ira_rel", row.ira_rel, row.ira_rel_interval, row.images_rest, t.min_retention),
            ("grid_cra_rel", row.cra_rel, row.cra_rel_interval, row.images_rest, t.min_retention),
        ):
            _check(checks, f"{name}[{target}]", value, minimum=minimum, evidence="training-wording")
            if value is not None and images is not None:
                checks[f"{name}[{target}]"].update(interval=list(interval) if interval else None, images=images)


# Checks of what must stay that a model version's start can already fail (measured against the same source).
RETENTION_SIDE = ("retention[", "grid_ira_rel[", "grid_cra_rel[")


def _failures(checks: dict[str, dict[str, Any]], start: dict[str, float] | None = None) -> list[str]:
    start = start or {}
    return [f"{name} {c['value']:.3f} is {'below the required' if 'min' in c else 'above the allowed'} "
            f"{c.get('min', c.get('max')):.3f}"
            + (f" (the version it started from: {start[name]:.3f})" if name in start else "")
            for name, c in checks.items() if not c["passed"]]


def retention_side(metrics: EngineMetrics) -> dict[str, float]:
    """The values of the checks that measure what must stay (held-out retention, grid IRA/CRA), by check name."""
    checks: dict[str, dict[str, Any]] = {}
    unchecked = Thresholds(min_unlearning_accuracy=0.0, min_retention=0.0, min_gap_closure=None,
                           max_retain_drift=1.0)
    _diagnostic_checks(metrics, unchecked, checks)
    if metrics.judge is not None:
        _judge_checks(metrics.judge, unchecked, checks)
    return {name: c["value"] for name, c in checks.items() if name.startswith(RETENTION_SIDE)}


def inherited(verdict: Verdict, metrics: EngineMetrics, thresholds: Thresholds) -> list[str]:
    """The failed checks of what must stay that the version the erasure started from fails too (against the same
    source): lost before this erasure. Training from that version, whose outputs are the retain teacher, cannot
    win them back."""
    start = metrics.start_retention or {}
    return [name for name, c in verdict.checks.items()
            if not c["passed"] and name in start and start[name] < thresholds.min_retention]


def verify(metrics: EngineMetrics, thresholds: Thresholds, concepts: list[str] | None = None) -> Verdict:
    """Judge the engine's metrics. `concepts`: every erased concept, each of which needs image evidence."""
    checks: dict[str, dict[str, Any]] = {}
    judge = metrics.judge
    _diagnostic_checks(metrics, thresholds, checks)
    failed = _failures(checks, metrics.start_retention)
    if judge is None:
        reason = metrics.judge_error or "no judge produced image-level evidence"
        return Verdict(False, f"not verified: {reason}; a certificate needs a judge's verdict on held-out images"
                       + (f" (also: {'; '.join(failed)})" if failed else ""), checks)
    image_checks: dict[str, dict[str, Any]] = {}
    missing = _judge_checks(judge, thresholds, image_checks)
    judged = {c.concept for c in judge.concepts}
    missing += [c for c in concepts or [] if c not in judged]
    checks = {**image_checks, **checks}
    failed = _failures(checks, metrics.start_retention)
    if missing:
        failed.insert(0, f"no held-out image evidence for {', '.join(sorted(set(missing)))}")
    if not any(c["evidence"] == "image" for c in checks.values()):
        failed.insert(0, "the judge reported no image-level check")
    if failed:
        return Verdict(False, "verification failed: " + "; ".join(failed), checks)
    return Verdict(True, "verified", checks)
