"""How much slower this box runs the engine than the box the committed benchmarks ran on.

The suite's long time limits (pytest-timeout's, the docs' bash sessions) are hang detectors sized on that box. On
a box several times slower every long test still finishes, only later, and a fixed limit would fail it for
being slow rather than stuck. So the limits are multiplied by a measured factor: the seconds this box takes to
sample the committed benchmark's sampling reference (its first testbed, one torch thread, the same batch and
steps) over the seconds `bench/results/erasure_testbeds.json` recorded for it, never below 1 (a faster box keeps
the limits as written) and at most `MAX_SLOWDOWN` (a box slower than that fails on time, as it should: the
limits stay hang detectors).

The factor is measured once per run (the xdist controller measures before its workers start; they inherit it
through `LETHE_TEST_SLOWDOWN`, which a developer may also set by hand) and only when a collected test carries a
limit that needs it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "LETHE_TEST_SLOWDOWN"
MAX_SLOWDOWN = 4.0
REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "results" / "erasure_testbeds.json"


def reference() -> tuple[str, float]:
    """The shipped testbed folder the committed benchmark measured its sampling reference on (its first), and
    the seconds that took there."""
    result = json.loads(REFERENCE.read_text())
    return Path(result["testbed"]).name, float(result["sampling_reference"]["seconds"])


def measure_seconds(testbed: str, repeats: int = 2) -> float:
    """Best of `repeats` samplings of the reference batch by the shipped `testbed` folder's pipeline on this box,
    in one torch thread (after one warm-up)."""
    import torch

    from core.spare.loading import pipeline_dir
    from core.spare.samples import generate_latents
    from core.testbed.canvas import OBJECTS, STYLES, prompt
    from core.testbed.loading import load_pipeline
    from core.testbed.paths import SHIPPED

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = load_pipeline(pipeline_dir(SHIPPED.parent / testbed))
        prompts = [prompt(OBJECTS[i % len(OBJECTS)], STYLES[i % len(STYLES)]) for i in range(8)]
        best = float("inf")
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            generate_latents(pipe, prompts, seed=0, steps=20, guidance=5.0, per_prompt=1)
            best = min(best, time.perf_counter() - t0)
        return best
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
