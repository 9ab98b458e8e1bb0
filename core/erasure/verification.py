"""The verification rule: an erasure only succeeds if its measured effect meets the thresholds in Settings.

Two kinds of evidence, whichever the engine reported:
- the testbed evaluator's classifier metrics (UA, IRA, CRA, with the base model's IRA/CRA), and
- noise-space metrics for any model: how much of the forget→surrogate gap closed and how far retain
  prompts drifted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config import Settings


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    checks: dict[str, dict[str, Any]]


def _num(metrics: dict[str, Any], *names: str) -> float | None:
    for name in names:
        value = metrics.get(name)
        if isinstance(value, int | float):
            return float(value)
    return None


def _flatten(metrics: dict[str, Any]) -> dict[str, Any]:
    """Engines group metrics (e.g. {"probe": {...}, "testbed": {...}}); names are unique across groups."""
    flat: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            flat.update({k: v for k, v in value.items() if not isinstance(v, dict)})
        else:
            flat[name] = value
    return flat


def verify(metrics: dict[str, Any], settings: Settings) -> Verdict:
    # The testbed evaluator reports per target: {"summary": {target: {ua, ira_rel, cra_rel, ...}}}.
    per_target = metrics.get("summary") if isinstance(metrics.get("summary"), dict) else {}
    metrics = _flatten(metrics)
    checks: dict[str, dict[str, Any]] = {}
    for target, row in sorted(per_target.items()):
        if not isinstance(row, dict):
            continue
        if isinstance(row.get("ua"), int | float):
            checks[f"ua[{target}]"] = {"value": float(row["ua"]), "min": settings.verify_min_unlearning_accuracy}
        for name in ("ira_rel", "cra_rel"):
            if isinstance(row.get(name), int | float):
                checks[f"{name}[{target}]"] = {"value": float(row[name]), "min": settings.verify_min_retention}
    ua = _num(metrics, "ua", "UA")
    if ua is not None:
        checks["ua"] = {"value": ua, "min": settings.verify_min_unlearning_accuracy}
        for name in ("ira", "cra"):
            after = _num(metrics, name, name.upper())
            base = _num(metrics, f"base_{name}", f"{name}_base")
            if after is not None and base:
                checks[f"{name}_retention"] = {"value": after / base, "min": settings.verify_min_retention}
    closure = _num(metrics, "forget_gap_closure")
    if closure is not None:
        checks["forget_gap_closure"] = {"value": closure, "min": settings.verify_min_gap_closure}
    drift = _num(metrics, "retain_drift_relative")
    if drift is not None:
        checks["retain_drift_relative"] = {"value": drift, "max": settings.verify_max_retain_drift}
    if not checks:
        return Verdict(False, "the erasure reported no verification metrics, so it cannot be verified", checks)
    failed = []
    for name, check in checks.items():
        if "min" in check and check["value"] < check["min"]:
            failed.append(f"{name} {check['value']:.3f} is below the required {check['min']:.3f}")
        if "max" in check and check["value"] > check["max"]:
            failed.append(f"{name} {check['value']:.3f} is above the allowed {check['max']:.3f}")
        check["passed"] = not any(f.startswith(name + " ") for f in failed)
    if failed:
        return Verdict(False, "verification failed: " + "; ".join(failed), checks)
    return Verdict(True, "verified", checks)
