"""Prometheus metrics of job attempts, recorded in the process that runs them (a `lethe worker`, which serves
them on LETHE_WORKER_METRICS_PORT, or the embedded runner inside `lethe serve`).

Metric objects live in prometheus_client's default registry; under PROMETHEUS_MULTIPROC_DIR they are shared
through its files like every other metric of the process.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

from core.jobs.states import JobKind

JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 10800)
STAGE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)

JOBS = Counter("lethe_worker_jobs", "Job attempts finished in this worker, by kind and outcome.", ["kind", "outcome"])
JOB_SECONDS = Histogram(
    "lethe_worker_job_duration_seconds", "Wall time of a job attempt, by kind and outcome.", ["kind", "outcome"],
    buckets=JOB_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "lethe_worker_stage_duration_seconds",
    "Wall time of each stage of an attempt (prepare, samples, saliency, ..., write, upload), by job kind.",
    ["kind", "stage"], buckets=STAGE_BUCKETS,
)
LEASE_LOSSES = Counter(
    "lethe_worker_lease_losses", "Attempts that lost their job's lease to another attempt (results discarded).",
    ["kind"],
)
for _kind in JobKind:  # 0 rather than absent: alert rules and rates see the series from the start
    LEASE_LOSSES.labels(_kind.value)


class StageClock:
    """Times the stages an attempt reports through its progress callback, one after the other."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._stage: str | None = None
        self._t0 = 0.0

    def enter(self, stage: str) -> None:
        # Erase-until-verified reports "round k/n: distill": time the stage, not the round (bounded labels).
        stage = stage.rsplit(": ", 1)[-1]
        if stage == self._stage:
            return
        self.finish()
        self._stage, self._t0 = stage, time.monotonic()

    def finish(self) -> None:
        if self._stage is not None:
            STAGE_SECONDS.labels(self.kind, self._stage).observe(time.monotonic() - self._t0)
            self._stage = None


def record_attempt(kind: str, outcome: str, seconds: float) -> None:
    JOBS.labels(kind, outcome).inc()
    JOB_SECONDS.labels(kind, outcome).observe(seconds)
    if outcome == "stale":
        LEASE_LOSSES.labels(kind).inc()
