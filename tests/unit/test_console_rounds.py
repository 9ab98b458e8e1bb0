"""The request page's rounds table (api.console.requests._rounds) from a request's stored metrics."""

from __future__ import annotations

from api.console.requests import _rounds


def _row(index: int, outcome: str, **extra: object) -> dict[str, object]:
    return {"round": index, "levers": [], "changed": {}, "seconds": 31.6, "ua": {"circle": 0.896},
            "retention": {"same-kind:object": 1.2, "other-kind:style": 0.95, "rest:x": None}, "passed": False,
            "retention_ok": True, "outcome": outcome, **extra}


def test_each_round_reads_as_levers_ua_lowest_retention_time_and_outcome() -> None:
    metrics = {"rounds": {"chosen": 2, "history": [
        _row(1, "short", refused="verification failed: ua[circle] 0.896 is below the required 0.900",
             timings_s={"check": 2.36, "evaluate": 23.1, "other": 6.1}),
        _row(2, "kept", levers=["capacity", "anchor"], ua={"circle": 1.0}),
    ]}}
    short, kept = _rounds(metrics)
    assert short == {"round": 1, "levers": "defaults", "ua": "circle 0.896", "retention": "0.950", "seconds": "32 s",
                     "split": "check 2.4 s, evaluation 23.1 s", "outcome": "short",
                     "refused": "verification failed: ua[circle] 0.896 is below the required 0.900"}
    assert kept["levers"] == "capacity + anchor" and kept["ua"] == "circle 1.000" and kept["outcome"] == "kept"
    assert kept["split"] == "" and kept["refused"] is None, "a report from before the split shows the total only"


def test_a_request_without_rounds_or_with_odd_rows_shows_what_it_can() -> None:
    assert _rounds(None) == [] and _rounds({}) == [] and _rounds({"rounds": {"history": "x"}}) == []
    odd = _rounds({"rounds": {"history": [None, {"round": 1, "ua": {"circle": "n/a"}, "retention": None}]}})
    assert odd == [{"round": 1, "levers": "defaults", "ua": "—", "retention": "—", "seconds": "0 s", "split": "",
                    "outcome": "—", "refused": None}]
