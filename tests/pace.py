"""How much slower this box runs the engine than the box the suite's time limits were sized on.

The suite's long time limits (pytest-timeout's, the docs' bash sessions) are hang detectors sized on that box. On
a box several times slower every long test still finishes, only later, and a fixed limit would fail it for
being slow rather than stuck. So the limits are multiplied by a measured factor: the seconds this box takes to
sample a benchmark's sampling reference (a shipped testbed, one torch thread, the same batch and steps) over
the seconds that took on the box the limits were sized on (`reference`), never below 1 (a faster box keeps
the limits as written) and at most `MAX_SLOWDOWN` (a box slower than that fails on time, as it should: the
limits stay hang detectors).

The factor is measured once per process that collects a long test (each xdist worker, about 5 s) and kept in
`LETHE_TEST_SLOWDOWN`, which a developer may also set by hand; a run of short tests never measures it. A run that
scaled its limits ends with a line giving the factor (`summary`; xdist workers hand theirs to the controller).
"""

from __future__ import annotations

import os

ENV = "LETHE_TEST_SLOWDOWN"
MAX_SLOWDOWN = 4.0


def reference() -> tuple[str, float]:
    """The shipped testbed folder of the sampling reference and the seconds it took on the box the limits were
    sized on: `bench/results/erasure_testbeds.json` as committed at 5ce89d9 (its first testbed, one thread),
    the run of the box whose CI passed in 1040 s. Kept here rather than read from that file, so that a later
    benchmark run on another box does not move the limits."""
    return "testbed-subword", 0.33825358100011726


def measure_seconds(testbed: str, repeats: int = 2) -> float:
    """Best of `repeats` runs of the benchmark's sampling reference (`bench.erasure.sampling_reference`) by the
    shipped `testbed` folder's pipeline on this box, in one torch thread (after one warm-up)."""
    import torch

    from bench.erasure import sampling_reference
    from core.spare.loading import pipeline_dir
    from core.testbed.loading import load_pipeline
    from core.testbed.paths import SHIPPED

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = load_pipeline(pipeline_dir(SHIPPED.parent / testbed))
        return min(sampling_reference(pipe)["seconds"] for _ in range(repeats + 1))
    finally:
        torch.set_num_threads(threads)


def slowdown() -> float:
    """The factor the long limits are multiplied by (measured on first use, then read from the environment)."""
    if os.environ.get(ENV):
        return float(os.environ[ENV])
    testbed, seconds = reference()
    factor = min(MAX_SLOWDOWN, max(1.0, measure_seconds(testbed) / seconds))
    os.environ[ENV] = f"{factor:.2f}"
    return float(os.environ[ENV])


def scaled(seconds: float) -> float:
    """A limit written for the benchmark's box, on this box."""
    return seconds * slowdown()


def summary() -> str:
    """The line a test run ends with when its limits were scaled (or the factor was set by hand)."""
    testbed, seconds = reference()
    return (f"time limits x{float(os.environ[ENV]):.2f} ({ENV}: this box's sampling of {testbed} over "
            f"{seconds:.3f} s, within [1, {MAX_SLOWDOWN:g}], unless set by hand)")
