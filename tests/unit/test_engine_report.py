"""The engine's typed report and what a job stores from it (core.spare.report, core.erasure.outcome)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.erasure.outcome import ErasureMetrics
from core.erasure.verification import Thresholds, verify
from core.spare.report import EngineMetrics, ErasureReport, RoundsRecord, RoundSummary
from core.spare.specs import SpareConfig
from tests.unit.reports import evidence, report

T = Thresholds(min_unlearning_accuracy=0.9, min_retention=0.9, min_gap_closure=0.5, max_retain_drift=0.5)


def _finished(judge_seconds: float = 2.0, total: float = 10.0) -> ErasureReport:
    made = report(SpareConfig(), {"judge": evidence(seconds=judge_seconds)})
    made.timings_s = {"distill": 5.0, "total": total}
    row = RoundSummary(round=1, levers=[], changed={}, seconds=8.0, ua={"circle": 1.0}, retention={"x": 1.0},
                       passed=True, retention_ok=True, outcome="kept")
    made.rounds = RoundsRecord(chosen=1, passed=True, history=[row], max_rounds=3, time_budget_s=None,
                               requested_config={}, total_seconds=9.0)
    return made


def test_stored_metrics_carry_the_verdict_rounds_and_judging_time() -> None:
    made = _finished()
    verdict = verify(made.metrics, T, ["circle"])
    stored = ErasureMetrics.of(made, verdict.checks, T).stored()
    assert stored["verification"]["ua[circle]"]["passed"] is True
    assert stored["verification"]["ua[circle]"]["evidence"] == "image"
    assert stored["rounds"]["chosen"] == 1 and stored["rounds"]["history"][0]["outcome"] == "kept"
    assert "requested_config" not in stored["rounds"], "the job stores the rounds' outcome, not the engine's record"
    assert stored["judging"] == {"seconds": 2.0, "erasure_seconds": 8.0, "share_of_erasure": 0.25}
    assert stored["thresholds"]["min_retention"] == 0.9
    assert stored["judge"]["concepts"][0]["surrogate"] is None, "members that are None are kept, not dropped"
    assert "probe" not in stored and "summary" not in stored, "what the engine did not measure is not invented"
    again = ErasureMetrics.model_validate(stored)
    assert again.stored() == stored


def test_older_stored_metrics_load_and_the_engine_refuses_unknown_members() -> None:
    old = ErasureMetrics.model_validate({"judge_error": "no judge could run: x", "retired": {"a": 1}})
    assert old.judge_error == "no judge could run: x" and old.model_extra == {"retired": {"a": 1}}
    checked = EngineMetrics.model_validate({"round_check": {"judge_error": "x", "extensions": 2}})
    assert checked.round_check is not None and checked.round_check.extensions == 2
    with pytest.raises(ValidationError):
        EngineMetrics.model_validate({"retired": 1})  # an evaluator's member must be a declared field


def test_report_json_is_the_typed_reports_dump() -> None:
    made = _finished()
    dumped = made.dump()
    assert dumped["metrics"]["judge"]["judge"]["name"] == "diffusion-classifier"
    assert dumped["rounds"]["history"][0]["round"] == 1 and dumped["timings_s"]["total"] == 10.0
    assert type(made).model_validate(dumped) == made
