"""Embedded mode: `lethe serve` without a broker runs jobs on its in-process worker and survives restarts."""

from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.erasure.states import RequestStatus
from core.jobs.states import JobState
from tests.integration.worker_support import (
    FAST_PARAMS,
    Processes,
    audit_actions,
    child_env,
    free_port,
    job_row,
    processes,
    request_row,
    seed_model,
    seed_request,
    seed_tenant,
    tiny_model,  # noqa: F401  (fixture)
    use_database,
    wait_for,
)

SLOW = {**FAST_PARAMS, "steps": 3000}


def _serve(procs: Processes, env: dict[str, str], port: int) -> None:
    procs.start("serve", [sys.executable, "-m", "core.cli", "serve", "--port", str(port)], env)
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200, 90,
             "lethe serve to answer /healthz")


@pytest.mark.slow(minutes=0.5)
def test_serve_runs_jobs_and_survives_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path  # noqa: F811
) -> None:
    url = f"sqlite:///{tmp_path / 'lethe.db'}"
    settings = {"database_url": url, "verify_min_gap_closure": "0", "job_progress_interval_seconds": "0.3",
                "job_lease_seconds": "300"}
    use_database(monkeypatch, url, **settings)
    tenant = seed_tenant()
    model = seed_model(tenant, tiny_model, fingerprint="fp")
    fast_req, fast_job = seed_request(tenant, model)
    slow_req, slow_job = seed_request(tenant, model, params=SLOW)
    env = child_env(**settings)
    port = free_port()
    with processes(tmp_path) as procs:
        # 1. Jobs run in the background of `lethe serve`; a graceful stop hands the running one back.
        _serve(procs, env, port)
        wait_for(lambda: request_row(fast_req).status == RequestStatus.succeeded, 120, "the fast job")
        wait_for(lambda: (job_row(slow_job).stage or "").endswith("distill") and job_row(slow_job).progress > 0.0,
                 120,
                 "the slow job to report distillation progress")
        serve = procs.procs[-1]
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
        job = job_row(slow_job)
        assert job.state == JobState.queued and job.stage == "released" and job.attempt == 1
        assert request_row(slow_req).status == RequestStatus.queued

        # 2. Restart: the queued job resumes (attempt 2); then the process dies hard mid-run.
        _serve(procs, env, port)
        wait_for(lambda: job_row(slow_job).attempt == 2 and job_row(slow_job).state == JobState.running, 60,
                 "the job to resume after restart")
        Processes.kill(procs.procs[-1])
        assert job_row(slow_job).state == JobState.running, "nobody noticed the crash yet"

        # 3. Restart again: the interrupted job is retried at once (not after its 300 s lease) and finishes.
        with unit_of_work() as s:
            s.execute(update(ErasureRequest).where(ErasureRequest.id == slow_req).values(params=FAST_PARAMS))
        _serve(procs, env, port)
        wait_for(lambda: request_row(slow_req).status == RequestStatus.succeeded, 120, "the retried job")
    job = job_row(slow_job)
    assert job.attempt == 3 and job.state == JobState.succeeded
    actions = [(a, p.get("attempt"), p.get("outcome")) for a, p in audit_actions(f"job:{slow_job}")
               if a != "artifact.stored"]
    assert actions == [
        ("job.attempt_started", 1, None), ("job.attempt_finished", 1, "released"),
        ("job.attempt_started", 2, None), ("job.lease_expired", 2, None), ("job.attempt_finished", 2, "retry"),
        ("job.attempt_started", 3, None), ("job.attempt_finished", 3, "succeeded"),
    ]
    assert isinstance(uuid.UUID(str(fast_job)), uuid.UUID)
