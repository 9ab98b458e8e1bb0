"""A model version's verification against v1: the version it started from is measured only when a retention
check fails, once per job, on v1 as the base, and its retention-side values go with every later result."""

from __future__ import annotations

from typing import Any

from core.erasure.lineage import against_source
from tests.unit.reports import evidence

GRID = {"circle": {"ua": 1.0, "ira": 1.0, "cra": 1.0, "ira_rel": 1.0, "cra_rel": 1.0}}


def _scripted(retention: dict[str, float]) -> tuple[Any, list[tuple[str, str]]]:
    """An evaluator whose held-out retention depends on the pipeline it judges; it records its calls, and which
    asked for every diagnostic (`complete`)."""
    calls: list[tuple[str, str]] = []

    def evaluate(erased: str, base: str, complete: bool = False, judged: Any = None) -> dict[str, Any]:
        calls.append((erased, base) if not complete else (erased, base, "complete"))  # type: ignore[arg-type]
        return {"judge": judged or evidence(retention=retention[erased]).model_dump(mode="json"), "summary": GRID}

    return evaluate, calls


def test_a_kept_retention_measures_nothing_more() -> None:
    evaluate, calls = _scripted({"round": 1.0})
    metrics = against_source(evaluate, lambda: "v1", min_retention=0.9)("round", "v3")
    assert calls == [("round", "v1")], "judged against v1, and the start was not measured"
    assert "start_retention" not in metrics


def test_a_lost_retention_measures_the_start_once() -> None:
    evaluate, calls = _scripted({"round 1": 0.8, "round 2": 1.0, "v3": 0.8})
    verified = against_source(evaluate, lambda: "v1", min_retention=0.9)
    first = verified("round 1", "v3")
    assert calls == [("round 1", "v1"), ("v3", "v1", "complete")], "the start, on the same source, fully diagnosed"
    assert first["start_retention"] == {"retention[same-kind:object]": 0.8, "grid_ira_rel[circle]": 1.0,
                                        "grid_cra_rel[circle]": 1.0}
    second = verified("round 2", "v3")
    assert calls[2:] == [("round 2", "v1")], "once per job"
    assert second["start_retention"] == first["start_retention"]


def test_evidence_handed_back_reaches_the_evaluator() -> None:
    # A kept round evaluated again for its skipped diagnostics hands back its judge evidence; judged against v1
    # as before, it is reused as it is.
    evaluate, calls = _scripted({"round": 1.0})
    handed = evidence(ua=0.85, retention=1.0).model_dump(mode="json")
    metrics = against_source(evaluate, lambda: "v1", min_retention=0.9)("round", "v3", complete=True, judged=handed)
    assert calls == [("round", "v1", "complete")] and metrics["judge"] == handed
