"""The verification rule: image evidence from a judge passes; noise-space or training-wording metrics never do."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from core.config import Settings
from core.erasure.verification import Thresholds, Verdict
from core.erasure.verification import verify as verify_metrics
from core.evaluation.evidence import wilson
from core.evaluation.evidence_schema import JudgeEvidence
from core.evaluation.vocabulary import DEFAULT, Vocabulary, VocabularyError, load_vocabulary
from core.spare.report import EngineMetrics
from tests.unit.reports import evidence

T = Thresholds(min_unlearning_accuracy=0.9, min_retention=0.9, min_gap_closure=0.5, max_retain_drift=0.5)
GOOD_PROBE = {"forget_gap_closure": 0.99, "retain_drift_relative": 0.01, "base_forget_gap": 1.0, "forget_gap": 0.01,
              "retain_drift": 0.01}
GOOD_GRID = {"circle": {"ua": 1.0, "ira": 1.0, "cra": 1.0, "ira_rel": 1.0, "cra_rel": 1.0}}


def judge(ua: float = 1.0, retention: float | None = 1.0, images: int = 12) -> JudgeEvidence:
    return evidence(ua, retention, images)


def verify(metrics: dict[str, Any], thresholds: Thresholds, concepts: list[str] | None = None) -> Verdict:
    """The rule on the engine's typed metrics, given as their members."""
    return verify_metrics(EngineMetrics.model_validate(metrics), thresholds, concepts)


def test_noise_space_and_training_wording_metrics_never_pass_alone() -> None:
    verdict = verify({"probe": GOOD_PROBE, "summary": GOOD_GRID}, T, ["circle"])
    assert not verdict.ok
    assert "no judge produced image-level evidence" in verdict.reason
    assert all(c["passed"] for c in verdict.checks.values()), "every diagnostic passed, and still no verdict"
    reason = verify({"probe": GOOD_PROBE, "judge_error": "no judge could run: x"}, T).reason
    assert reason.startswith("not verified: no judge could run: x")


def test_judge_evidence_passes_and_diagnostics_can_still_fail() -> None:
    assert verify({"probe": GOOD_PROBE, "judge": judge()}, T, ["circle"]).ok
    verdict = verify({"probe": {**GOOD_PROBE, "forget_gap_closure": 0.1}, "judge": judge()}, T, ["circle"])
    assert not verdict.ok and "forget_gap_closure 0.100 is below the required 0.500" in verdict.reason
    assert verdict.checks["forget_gap_closure"]["evidence"] == "noise-space"


def test_gap_closure_off_is_reported_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_VERIFY_MIN_GAP_CLOSURE", "")
    assert Thresholds.for_request(Settings()).min_gap_closure is None
    off = dataclasses.replace(T, min_gap_closure=None)
    verdict = verify({"probe": {**GOOD_PROBE, "forget_gap_closure": -0.14}, "judge": judge()}, off, ["circle"])
    assert verdict.ok, verdict.reason
    assert verdict.checks["forget_gap_closure"] == {"value": -0.14, "passed": True, "evidence": "noise-space"}
    # The retain drift is still checked, and the judge still decides.
    assert not verify({"probe": {**GOOD_PROBE, "retain_drift_relative": 0.9}, "judge": judge()}, off, ["circle"]).ok
    assert not verify({"probe": GOOD_PROBE, "judge": judge(ua=0.5)}, off, ["circle"]).ok
    monkeypatch.setenv("LETHE_VERIFY_MIN_GAP_CLOSURE", "0.25")
    assert Thresholds.for_request(Settings()).min_gap_closure == 0.25


def test_short_ua_or_retention_fails_with_numbers() -> None:
    verdict = verify({"judge": judge(ua=0.6)}, T, ["circle"])
    assert not verdict.ok and "ua[circle] 0.600 is below the required 0.900" in verdict.reason
    assert verdict.checks["ua[circle]"]["interval"] == [0.7, 1.0]
    verdict = verify({"judge": judge(retention=0.5)}, T, ["circle"])
    assert "retention[same-kind:object] 0.500 is below the required 0.900" in verdict.reason


def test_a_retention_the_start_had_lost_is_named_and_ends_the_rounds() -> None:
    from core.erasure.judging import acceptance
    from core.erasure.verification import retention_side

    lost = {"judge": judge(retention=0.8), "summary": GOOD_GRID}
    start = retention_side(EngineMetrics.model_validate(lost))
    assert start == {"retention[same-kind:object]": 0.8, "grid_ira_rel[circle]": 1.0, "grid_cra_rel[circle]": 1.0}
    accept = acceptance(T, ["circle"])

    # The version the erasure started from fails the same check against v1: no round can win it back.
    metrics = EngineMetrics.model_validate({**lost, "start_retention": start})
    verdict = verify_metrics(metrics, T, ["circle"])
    assert not verdict.ok
    assert "retention[same-kind:object] 0.800 is below the required 0.900 (the version it started from: 0.800)" \
        in verdict.reason
    refused = accept(metrics)
    assert not refused.passed and refused.ua_ok and refused.retention_ok, "a refusal no lever changes"
    assert "lost before this erasure: retention[same-kind:object]" in refused.metrics["reason"]

    # The start held it: this erasure lost it, so the loop rolls back as on any broken retention.
    held = EngineMetrics.model_validate({**lost, "start_retention": {**start, "retention[same-kind:object]": 1.0}})
    refused = accept(held)
    assert not refused.passed and refused.ua_ok and not refused.retention_ok
    assert "lost before" not in refused.metrics["reason"]

    # Erasure short as well: escalate erasure (retention is not this erasure's to win back).
    short = EngineMetrics.model_validate({"judge": judge(ua=0.5, retention=0.8), "start_retention": start})
    refused = accept(short)
    assert not refused.passed and not refused.ua_ok and refused.retention_ok


def test_every_erased_concept_needs_its_own_evidence() -> None:
    verdict = verify({"judge": judge()}, T, ["circle", "square"])
    assert not verdict.ok and "no held-out image evidence for square" in verdict.reason
    assert not verify({"judge": judge(images=0)}, T, ["circle"]).ok


def test_requests_raise_thresholds_never_lower_them() -> None:
    s = Settings(verify_min_unlearning_accuracy=0.9, verify_min_retention=0.8)
    raised = Thresholds.for_request(s, {"min_unlearning_accuracy": 0.99, "min_retention": 0.5})
    assert raised.min_unlearning_accuracy == 0.99 and raised.min_retention == 0.8
    assert not verify({"judge": judge(ua=0.95)}, raised, ["circle"]).ok


def test_wilson_interval() -> None:
    assert wilson(12, 12)[1] == 1.0 and 0.7 < wilson(12, 12)[0] < 0.8
    lo, hi = wilson(6, 12)
    assert lo < 0.5 < hi and wilson(0, 0) == (0.0, 1.0)


def test_vocabulary_fills_every_context_and_reads_lethe_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    vocab = Vocabulary(concepts={"object": ["a", "b"], "style": ["x", "y"]},
                       label_templates={"object": ["{object} in {style}"]},
                       heldout_templates={"object": ["the {style} {object}", "{object}!"]})
    assert vocab.label_prompts("object", "a") == ["a in x", "a in y"]
    assert vocab.heldout_prompts("object", "a") == ["the x a", "a!", "the y a"]
    assert vocab.heldout_prompts("object", "a", exclude={"a!"}) == ["the x a", "the y a"]
    assert load_vocabulary(tmp_path) is DEFAULT
    (tmp_path / "lethe.json").write_text('{"format": 1, "label_templates": {"object": ["{nope}"]}}')
    with pytest.raises(VocabularyError, match="unknown slots"):
        load_vocabulary(tmp_path)
