"""What a model version records of the concepts its erasure removed: the surrogate the kept round trained
toward, which the surrogate screen or a switch between rounds may have changed from the request's."""

from __future__ import annotations

import uuid

from core.erasure.models import ErasureRequest
from core.erasure.outcome import ErasureMetrics
from core.spare.report import RoundsOutcome, RoundSummary
from core.versions.service import erased_by


def _round(index: int, surrogate: str, outcome: str) -> RoundSummary:
    return RoundSummary(round=index, levers=[], changed={}, seconds=5.0, surrogates={"dotted": surrogate},
                        ua={"dotted": 1.0}, retention={"same-kind:style": 1.0}, passed=outcome == "kept",
                        retention_ok=True, outcome=outcome)


def _erasure(metrics: dict | None) -> ErasureRequest:
    return ErasureRequest(id=uuid.uuid4(), concepts=[{"target": "dotted", "kind": "style", "surrogate": "outline"}],
                          metrics=metrics)


def test_the_version_records_the_surrogate_the_kept_round_trained_toward() -> None:
    rounds = RoundsOutcome(chosen=2, passed=True, history=[_round(1, "outline", "rolled back (retention)"),
                                                           _round(2, "checkered", "kept")])
    stored = ErasureMetrics.model_validate({"rounds": rounds.model_dump(mode="json")}).stored()
    erasure = _erasure(stored)
    [concept] = erased_by(erasure, 2)
    assert concept == {"target": "dotted", "kind": "style", "surrogate": "checkered", "version": 2,
                       "erasure_id": str(erasure.id)}


def test_without_rounds_the_request_surrogate_stands() -> None:
    assert erased_by(_erasure(None), 3)[0]["surrogate"] == "outline"
    assert erased_by(_erasure({"probe": {}}), 3)[0]["surrogate"] == "outline"
