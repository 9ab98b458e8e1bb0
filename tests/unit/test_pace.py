"""The suite's long time limits follow this box's measured speed (tests/pace.py, tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import pace

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_is_a_shipped_testbed_and_the_committed_benchmarks_measurement() -> None:
    testbed, seconds = pace.reference()
    assert (ROOT / "core/testbed/assets" / testbed / "manifest.json").is_file()
    at = subprocess.run(["git", "show", "5ce89d9:bench/results/erasure_testbeds.json"], cwd=ROOT, capture_output=True,
                        text=True)
    if at.returncode == 0:  # a shallow clone may not hold that commit
        committed = json.loads(at.stdout)
        assert (Path(committed["testbed"]).name, committed["sampling_reference"]["seconds"]) == (testbed, seconds)


def test_the_factor_is_measured_once_kept_within_its_bounds_and_handed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pace.ENV, raising=False)
    factor = pace.slowdown()
    assert 1.0 <= factor <= pace.MAX_SLOWDOWN
    assert os.environ[pace.ENV] == f"{factor:.2f}"
    assert pace.scaled(10) == pytest.approx(10 * factor)


@pytest.mark.timeout(600)
def test_this_runs_own_limit_was_scaled(request: pytest.FixtureRequest) -> None:
    # The collection hook put the scaled limit in front of the 600 s written here.
    assert request.node.get_closest_marker("timeout").args[0] == pytest.approx(600 * pace.slowdown())


@pytest.mark.parametrize(("factor", "outcome"), [("1", "1 failed"), ("4", "1 passed")])
def test_a_test_slower_than_its_limit_passes_only_on_a_box_slow_enough(tmp_path: Path, factor: str,
                                                                       outcome: str) -> None:
    (tmp_path / "test_sleeps.py").write_text(textwrap.dedent("""
        import time
        import pytest

        @pytest.mark.timeout(1)
        def test_sleeps():
            time.sleep(2)
    """))
    proc = _pytest(tmp_path / "test_sleeps.py", factor=factor)
    assert outcome in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_run_reports_the_factor_its_tests_measured(tmp_path: Path, workers: str) -> None:
    # The test stands in for the measurement (which a collected long test triggers in the process running it):
    # on two xdist workers the factor is found in a worker and must reach the controller's summary.
    (tmp_path / "test_measures.py").write_text(textwrap.dedent(f"""
        import os

        def test_measures():
            os.environ["{pace.ENV}"] = "2.50"
    """))
    proc = _pytest(tmp_path / "test_measures.py", "-n", workers)
    assert "1 passed" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"time limits x2.50 ({pace.ENV}" in proc.stdout


def test_a_run_that_measured_nothing_reports_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    pass\n")
    proc = _pytest(tmp_path / "test_plain.py", "-n", "2")
    assert "1 passed" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "time limits x" not in proc.stdout


def _pytest(test_file: Path, *args: str, factor: str | None = None) -> subprocess.CompletedProcess[str]:
    """A real pytest run of `test_file` with the suite's conftest, the factor set by hand or left unset."""
    env = {k: v for k, v in os.environ.items() if k != pace.ENV} | {"PYTHONPATH": str(ROOT)}
    if factor is not None:
        env[pace.ENV] = factor
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-p", "no:cacheprovider",
                           *args, str(test_file)], cwd=test_file.parent, env=env, capture_output=True, text=True,
                          timeout=120)
