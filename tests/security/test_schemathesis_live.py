"""The permanent probe at CI size: schemathesis against a live uvicorn on Postgres, as a valid API key, with
the examples, coverage, fuzzing and stateful (inferred links) phases — no response may be a 5xx.
bench/schemathesis_probe.py runs the same probe at nightly size (>= 10,000 requests)."""

from __future__ import annotations

import pytest

from bench.schemathesis_probe import PHASES, probe


@pytest.mark.slow(minutes=0.3)
def test_live_server_probe_has_no_5xx(pg_url: str) -> None:
    # One schemathesis worker: on CPython 3.11 concurrent ast.parse calls (hypothesis describing lambdas in
    # strategy reprs from two threads) can raise "SystemError: AST constructor recursion depth mismatch".
    result = probe(pg_url, max_examples=6, workers=1, seed=12)
    assert result.requests >= 2000, (result.requests, result.output_tail)
    assert result.five_xx == 0, (result.by_operation_5xx, result.server_errors)
    assert result.exit_code == 0, result.output_tail
    for phase in PHASES.split(","):
        assert phase.capitalize() in result.output_tail, phase
    authenticated = sum(n for code, n in result.statuses.items() if code[0] == "2")
    assert authenticated >= 50, result.statuses  # the key worked: operations were reached, not just refused
