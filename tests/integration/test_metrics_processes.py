"""Metrics across processes: `lethe serve --workers 2` answers every scrape with the sum of both processes'
counters (Prometheus multiprocess mode), and the job metrics count what an attempt did."""

from __future__ import annotations

import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.worker_support import child_env, free_port, processes, use_database, wait_for


def _healthz_count(text: str) -> float:
    match = re.search(r'^lethe_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$', text,
                      re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_two_uvicorn_workers_report_the_same_aggregated_counters(
    pg_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_database(monkeypatch, pg_url)
    port, shared = free_port(), tmp_path / "prometheus"
    shared.mkdir()
    (shared / "counter_999999.db").write_bytes(b"left over from an earlier run")
    env = child_env(database_url=pg_url, broker_url=redis_url, data_dir=str(tmp_path / "data"),
                    metrics_multiproc_dir=str(shared))
    base = f"http://127.0.0.1:{port}"
    with processes(tmp_path) as procs:
        procs.start("api", [sys.executable, "-m", "core.cli", "serve", "--port", str(port), "--workers", "2"], env)
        wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 60, "the API")
        assert not (shared / "counter_999999.db").exists(), "stale counters must be cleared at start"
        before = _healthz_count(httpx.get(f"{base}/metrics", timeout=5).text)
        sent = 60

        def hit(_: int) -> int:
            return httpx.get(f"{base}/healthz", timeout=5).status_code  # a new connection each time

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(hit, range(sent))) == {200}
        pids = {p.name.split("_")[1].split(".")[0] for p in shared.glob("counter_*.db")}
        assert len(pids) >= 2, f"both HTTP processes should have served requests: {sorted(pids)}"
        # Every scrape, whichever process answers it, shows all requests.
        counts = set()
        for _ in range(8):
            counts.add(_healthz_count(httpx.get(f"{base}/metrics", timeout=5).text) - before)
            time.sleep(0.05)
        assert counts == {sent}, counts
        assert procs.procs[0].poll() is None


def test_overdue_requests_and_expired_leases_are_gauges_read_at_scrape_time(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from api.metrics import Metrics
    from core.db import get_engine, unit_of_work
    from core.jobs.models import Job
    from core.jobs.states import JobState
    from core.timeutil import utcnow
    from tests.integration.worker_support import seed_model, seed_request, seed_tenant

    use_database(monkeypatch, pg_url)
    metrics = Metrics(get_engine())

    def gauges() -> tuple[str, str]:
        text = metrics.render().decode()
        pick = [re.search(rf"^{name} (\S+)$", text, re.MULTILINE) for name in
                ("lethe_requests_overdue", "lethe_leases_expired")]
        return tuple(m.group(1) if m else "absent" for m in pick)  # type: ignore[return-value]

    assert gauges() == ("0.0", "0.0")
    tenant = seed_tenant()
    model = seed_model(tenant, tmp_path)
    seed_request(tenant, model, due_at=utcnow() + timedelta(days=1))
    _, late_job = seed_request(tenant, model, due_at=utcnow() - timedelta(minutes=5))
    assert gauges() == ("1.0", "0.0")
    with unit_of_work() as s:
        job = s.get(Job, late_job)
        job.state, job.lease_expires_at = JobState.running, utcnow() - timedelta(seconds=1)
    assert gauges() == ("1.0", "1.0")


def test_embedded_mode_exports_the_in_process_workers_job_metrics(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                                    redis_url: str) -> None:
    """Without a broker `lethe serve` runs jobs itself: its /metrics carries the job metrics too."""
    import uuid

    from fastapi.testclient import TestClient

    from api.app import create_app
    from core.config import get_settings
    from core.jobs.metrics import record_attempt

    use_database(monkeypatch, pg_url)
    kind = f"k{uuid.uuid4().hex[:6]}"
    record_attempt(kind, "succeeded", 2.0)
    embedded = TestClient(create_app(get_settings())).get("/metrics").text
    assert f'lethe_worker_jobs_total{{kind="{kind}",outcome="succeeded"}} 1.0' in embedded
    brokered = TestClient(create_app(get_settings().model_copy(update={"broker_url": redis_url}))).get("/metrics")
    assert "lethe_worker_jobs_total" not in brokered.text, "an API with workers elsewhere has no job metrics"
