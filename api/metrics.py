"""Prometheus metrics: HTTP requests and latencies (recorded by the middleware), jobs by state and queue
depth (read from the database at scrape time, so every API process reports the same truth).

Each app gets its own CollectorRegistry (tests build many apps in one process). Under several uvicorn worker
processes (`lethe serve --workers N` sets PROMETHEUS_MULTIPROC_DIR, prometheus_client's own variable) every
process writes its counters to files in that folder and a scrape of any process sums them all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from core.db import session_factory
from core.erasure import repository as erasure_repo
from core.logging import get_logger
from core.timeutil import utcnow

log = get_logger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _QueueCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("lethe_jobs", "Jobs by kind and state.", labels=["kind", "state"])
        depth = GaugeMetricFamily("lethe_queue_depth", "Jobs waiting to run (state queued).", labels=["kind"])
        outbox = GaugeMetricFamily("lethe_outbox_pending", "Outbox messages not yet published.")
        overdue = GaugeMetricFamily("lethe_requests_overdue", "Open erasure requests past their due date.")
        expired = GaugeMetricFamily(
            "lethe_leases_expired", "Running jobs whose lease ran out and that no sweeper has requeued yet."
        )
        up = GaugeMetricFamily("lethe_metrics_database_up", "1 when the scrape could read the database.")
        try:
            with session_factory(self.engine)() as session:
                stats = erasure_repo.queue_stats(session, utcnow())
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("metrics: database unavailable", error=type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        for (kind, state), count in sorted(stats.jobs_by_kind_state.items()):
            jobs.add_metric([kind, state], count)
        for kind, count in sorted(stats.queued_by_kind.items()):
            depth.add_metric([kind], count)
        outbox.add_metric([], stats.outbox_pending)
        overdue.add_metric([], stats.overdue_requests)
        expired.add_metric([], stats.expired_leases)
        up.add_metric([], 1)
        yield from (jobs, depth, outbox, overdue, expired, up)

    def describe(self) -> list[GaugeMetricFamily]:
        return []


class Metrics:
    def __init__(self, engine: Engine, *, job_metrics: bool = False) -> None:
        """`job_metrics`: also export the job-attempt metrics of this process (embedded mode runs jobs here)."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lethe_http_requests", "HTTP requests by method, route template and status.",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "lethe_http_request_duration_seconds", "HTTP request latency by method and route template.",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.queue = _QueueCollector(engine)
        self.registry.register(self.queue)
        if job_metrics:
            from core.jobs import metrics as jm

            for metric in (jm.JOBS, jm.JOB_SECONDS, jm.STAGE_SECONDS, jm.LEASE_LOSSES):
                self.registry.register(metric)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        # Every process's HTTP counters from the shared folder, plus the job gauges read now.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.queue)
        return generate_latest(registry)
