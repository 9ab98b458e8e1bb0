"""The heartbeat file, the lease freshness it depends on, stage timing and the GPU memory collector."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from core.config import Settings
from core.heartbeat import Heartbeat, age_seconds
from core.jobs import keeper as lease_keeper
from core.jobs import metrics as job_metrics
from core.jobs.lifecycle import Lease
from core.jobs.states import JobKind
from worker.monitoring import GpuMemoryCollector

HEALTHCHECK = "import os,sys,time; sys.exit(time.time() - os.stat({path!r}).st_mtime > 60)"


def _check(path: Path) -> int:
    return subprocess.run([sys.executable, "-c", HEALTHCHECK.format(path=str(path))], timeout=30).returncode


def test_heartbeat_file_and_the_compose_one_liner(tmp_path: Path) -> None:
    path = tmp_path / "run" / "lethe.alive"
    assert _check(path) != 0, "no file yet: unhealthy"
    beat = Heartbeat(path, 0.05)
    beat.start()
    try:
        first = path.stat().st_mtime if path.exists() else None
        deadline = time.monotonic() + 5
        while (not path.exists() or path.stat().st_mtime == first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.exists() and age_seconds(path) < 5
        assert _check(path) == 0
    finally:
        beat.stop()
        beat.join(5)
    old = time.time() - 120
    os.utime(path, (old, old))
    assert _check(path) != 0, "stale for two minutes: unhealthy"


def test_a_lease_not_renewed_for_a_whole_period_stops_the_heartbeat(tmp_path: Path) -> None:
    held = Lease(job_id=uuid.uuid4(), attempt=1, worker_id="w", kind=JobKind.erase, tenant_id=uuid.uuid4(),
                 model_id=uuid.uuid4(), request_id=None)
    keeper = lease_keeper.LeaseKeeper(held, Settings(job_lease_seconds=30))
    with lease_keeper._ACTIVE_LOCK:
        lease_keeper._ACTIVE.add(keeper)  # as start() does, without its database thread
    try:
        path = tmp_path / "alive"
        beat = Heartbeat(path, 60, healthy=lease_keeper.leases_fresh)
        assert beat.beat() and path.exists()
        old = time.time() - 120
        os.utime(path, (old, old))
        keeper.last_renewed = time.monotonic() - 31  # the database has refused heartbeats for a lease period
        assert not lease_keeper.leases_fresh()
        assert not beat.beat()
        assert age_seconds(path) > 100, "an unhealthy worker must not touch its file"
    finally:
        keeper.stop()
    assert lease_keeper.leases_fresh(), "no running job: healthy"


def test_stage_clock_and_attempt_records_land_in_the_histograms() -> None:
    kind = f"k{uuid.uuid4().hex[:6]}"  # a label of this test's own in the process-wide registry
    clock = job_metrics.StageClock(kind)
    clock.enter("samples")
    clock.enter("samples")
    time.sleep(0.02)
    clock.enter("distill")
    clock.finish()
    job_metrics.record_attempt(kind, "succeeded", 3.0)
    job_metrics.record_attempt(kind, "stale", 1.0)

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"kind": kind, **labels})

    assert value("lethe_worker_stage_duration_seconds_count", stage="samples") == 1
    assert value("lethe_worker_stage_duration_seconds_sum", stage="samples") >= 0.02
    assert value("lethe_worker_stage_duration_seconds_count", stage="distill") == 1
    assert value("lethe_worker_jobs_total", outcome="succeeded") == 1
    assert value("lethe_worker_job_duration_seconds_sum", outcome="succeeded") == 3.0
    assert value("lethe_worker_lease_losses_total") == 1


def test_gpu_memory_is_reported_per_device_when_cuda_is_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: torch.cuda is replaced by a two-device stand-in (the only mock: a GPU)."""
    cuda = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 2,
        memory_allocated=lambda i: 100 + i, memory_reserved=lambda i: 200 + i,
        max_memory_allocated=lambda i: 300 + i,
        get_device_properties=lambda i: types.SimpleNamespace(total_memory=1000 + i),
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    registry = CollectorRegistry()
    registry.register(GpuMemoryCollector())
    text = generate_latest(registry).decode()
    assert 'lethe_worker_gpu_memory_bytes{device="1",kind="reserved"} 201.0' in text
    assert 'lethe_worker_gpu_memory_bytes{device="0",kind="total"} 1000.0' in text
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: False)))
    assert "lethe_worker_gpu_memory_bytes{" not in generate_latest(registry).decode()
