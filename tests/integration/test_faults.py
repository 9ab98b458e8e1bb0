"""Fault tests with real processes: Redis, Postgres, an S3 server and `celery worker` subprocesses.

Every service that a test breaks is private to it (its own redis-server, a TCP proxy in front of Postgres,
its own moto server), every process it starts is killed by PID at the end, and every wait is bounded.
Slow jobs are real SPARE runs with many steps; once a fault has been injected, some tests shorten the
job's remaining work (its `params`) so the suite stays within a few minutes — the recovery path is what
is under test, not the engine.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.engine import make_url

from core.audit.service import verify
from core.config import get_settings
from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.erasure.states import RequestStatus
from core.jobs.states import JobState
from core.outbox.relay import relay
from core.storage import attempt_prefix, get_store
from core.storage.s3 import S3Store
from tests.api_support import build_env
from tests.integration.worker_support import (
    FAST_PARAMS,
    PrivateRedis,
    Processes,
    RestartableS3,
    TcpProxy,
    artifacts,
    audit_actions,
    child_env,
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
from worker.app import make_app
from worker.publisher import CeleryPublisher

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow(minutes=0.4)]
SLOW = {**FAST_PARAMS, "steps": 3000}


@dataclass
class Stack:
    settings: dict[str, str]
    procs: Processes
    redis: PrivateRedis
    s3: RestartableS3
    tenant: uuid.UUID
    model: uuid.UUID
    tmp: Path

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(**{**self.settings, **extra})

    def worker(self, name: str = "worker", **extra: str) -> object:
        return self.procs.worker(self.env(**extra), name=name)

    def beat(self, **extra: str) -> object:
        return self.procs.start("beat", [sys.executable, "-m", "core.cli", "beat", "--interval", "1"],
                                self.env(**extra))

    def ring(self) -> int:
        with unit_of_work() as s:
            return relay(s, CeleryPublisher(make_app(get_settings())))


@pytest.fixture
def stack(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          tiny_model: Path) -> Iterator[Stack]:  # noqa: F811
    with processes(tmp_path) as procs:
        private_redis = PrivateRedis(procs)
        s3 = RestartableS3()
        settings = {
            "database_url": pg_url, "broker_url": private_redis.url,
            # A bucket of its own: moto's servers in one process share their state.
            "store_url": f"s3://faults-{uuid.uuid4().hex[:10]}/lethe",
            "s3_endpoint_url": s3.endpoint, "verify_min_gap_closure": "0",
            "job_lease_seconds": "10", "job_progress_interval_seconds": "0.5", "job_retry_backoff_seconds": "1",
            "requeue_after_seconds": "3", "sweep_interval_seconds": "1",
            "broker_visibility_timeout": "80",
            "broker_unacked_restore_interval": "1",
        }
        use_database(monkeypatch, pg_url, **settings)
        store = get_store()
        assert isinstance(store, S3Store)
        store.ensure_bucket()
        tenant = seed_tenant()
        model = seed_model(tenant, tiny_model, fingerprint="fp-faults")
        try:
            yield Stack(settings, procs, private_redis, s3, tenant, model, tmp_path)
        finally:
            s3.stop()


def _running_in_distill(job_id: uuid.UUID) -> bool:
    job = job_row(job_id)
    # Erase-until-verified reports the round too: "round 1/3: distill".
    return job.state == JobState.running and (job.stage or "").endswith("distill") and job.progress > 0


def _set_params(request_id: uuid.UUID, params: dict) -> None:
    with unit_of_work() as s:
        s.execute(update(ErasureRequest).where(ErasureRequest.id == request_id).values(params=params))


def _outcomes(job_id: uuid.UUID) -> list[tuple[str, int, str | None]]:
    return [(a, p["attempt"], p.get("outcome")) for a, p in audit_actions(f"job:{job_id}")
            if a in ("job.attempt_started", "job.attempt_finished")]


def test_1_worker_killed_mid_job_is_retried_and_succeeds_once(stack: Stack) -> None:
    request_id, job_id = seed_request(stack.tenant, stack.model, params=SLOW)
    first = stack.worker("w1")
    stack.beat()
    wait_for(lambda: _running_in_distill(job_id), 90, "the job to be mid-distillation")
    Processes.kill(first)  # kill -9, process group included
    _set_params(request_id, FAST_PARAMS)
    stack.worker("w2")
    wait_for(lambda: request_row(request_id).status == RequestStatus.succeeded, 120, "the retried job")

    job = job_row(job_id)
    assert job.attempt == 2 and job.state == JobState.succeeded
    assert _outcomes(job_id) == [
        ("job.attempt_started", 1, None), ("job.attempt_finished", 1, "retry"),
        ("job.attempt_started", 2, None), ("job.attempt_finished", 2, "succeeded"),
    ]
    rows = artifacts(job_id)
    assert rows and {r.attempt for r in rows} == {2}, "exactly one artifact set is referenced"
    store = get_store()
    assert store.list(attempt_prefix(stack.tenant, request_id, job_id, 1)) == []
    assert sorted(store.list(attempt_prefix(stack.tenant, request_id, job_id, 2))) == sorted(r.key for r in rows)
    with unit_of_work() as s:
        assert verify(s).ok


def test_2_redis_restart_loses_queued_messages_and_the_sweeper_republishes(stack: Stack) -> None:
    busy_req, busy = seed_request(stack.tenant, stack.model, params={**FAST_PARAMS, "steps": 60})
    queued = [seed_request(stack.tenant, stack.model) for _ in range(3)]
    stack.worker()
    assert stack.ring() == 4
    wait_for(lambda: job_row(busy).state == JobState.running, 60, "the worker to take the first job")
    broker = redis.Redis.from_url(stack.redis.url)
    # A pub/sub read after a restart can block a worker's main thread for good: workers subscribe to nothing.
    assert broker.pubsub_numpat() == 0 and broker.pubsub_channels() == [], "the worker holds no subscription"
    assert broker.llen("gpu") == 3, "three doorbells wait in Redis"
    stack.redis.restart()
    assert redis.Redis.from_url(stack.redis.url).llen("gpu") == 0, "the restart lost them"
    stack.beat()
    for request_id, _ in [(busy_req, busy), *queued]:
        wait_for(lambda r=request_id: request_row(r).status == RequestStatus.succeeded, 150, f"request {request_id}")
    for _, job_id in [(busy_req, busy), *queued]:
        assert job_row(job_id).attempt == 1, "none ran twice"
        assert _outcomes(job_id) == [("job.attempt_started", 1, None), ("job.attempt_finished", 1, "succeeded")]
        assert {a.attempt for a in artifacts(job_id)} == {1}


def test_3_postgres_outage_gives_503_and_workers_back_off(stack: Stack, pg_url: str) -> None:
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    request_id, job_id = seed_request(stack.tenant, stack.model)
    for api in build_env(proxied):
        headers = api.auth()
        assert api.client.get("/v1/erasures", headers=headers).status_code == 200
        stack.procs.worker(stack.env(database_url=proxied))
        proxy.cut()
        r = api.client.get("/v1/erasures", headers=headers)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"] == "https://lethe.dev/problems/unavailable"
        assert "Traceback" not in r.text
        assert api.client.get("/readyz").status_code == 503
        assert stack.ring() == 1  # the doorbell rings; the worker cannot reach the database
        wait_for(lambda: "database unavailable; backing off" in stack.procs.logs(), 60, "the worker to back off")
        time.sleep(2)
        proxy.resume()
        wait_for(lambda: request_row(request_id).status == RequestStatus.succeeded, 120, "the job after the outage")
        assert api.client.get("/v1/erasures", headers=headers).status_code == 200
    assert job_row(job_id).attempt == 1
    proxy.cut()


def test_4_object_store_down_during_upload(stack: Stack) -> None:
    # a) The store goes away mid-job: the upload fails, the attempt retries and succeeds once it is back.
    request_id, job_id = seed_request(stack.tenant, stack.model, params={**FAST_PARAMS, "steps": 40})
    stack.worker()
    stack.beat()
    wait_for(lambda: _running_in_distill(job_id), 90, "the job to be running")
    stack.s3.stop()
    wait_for(lambda: job_row(job_id).state == JobState.queued and job_row(job_id).attempt == 1, 90,
             "the first attempt to fail at upload")
    assert "object store" in (job_row(job_id).error or "")
    _set_params(request_id, FAST_PARAMS)
    stack.s3.start()
    wait_for(lambda: request_row(request_id).status == RequestStatus.succeeded, 120, "the retried attempt")
    assert job_row(job_id).attempt == 2
    assert {a.attempt for a in artifacts(job_id)} == {2}
    outcomes = [(a, n, o) for a, n, o in _outcomes(job_id) if a == "job.attempt_finished"]
    assert outcomes == [("job.attempt_finished", 1, "retry"), ("job.attempt_finished", 2, "succeeded")]

    # b) The store never comes back: after max attempts the job fails with a clear reason.
    stack.s3.stop()
    never_req, never_job = seed_request(stack.tenant, stack.model, max_attempts=2)
    wait_for(lambda: request_row(never_req).status == RequestStatus.failed, 120, "the job to give up")
    error = request_row(never_req).error or ""
    assert "object store" in error and "unreachable" in error and "gave up after 2 of 2 attempts" in error
    assert job_row(never_job).attempt == 2 and artifacts(never_job) == []


def test_5_cancel_a_running_job(stack: Stack) -> None:
    request_id, job_id = seed_request(stack.tenant, stack.model, params=SLOW)
    stack.worker()
    assert stack.ring() == 1
    wait_for(lambda: _running_in_distill(job_id), 90, "the job to be mid-distillation")
    for api in build_env(stack.settings["database_url"]):
        key = api.key()
        with unit_of_work() as s:  # the request belongs to the key's tenant
            s.execute(update(ErasureRequest).where(ErasureRequest.id == request_id)
                      .values(tenant_id=api.principal().tenant_id))
        r = api.client.post(f"/v1/erasures/{request_id}/cancel", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code in (200, 202), r.text
        asked = time.monotonic()
        wait_for(lambda: job_row(job_id).state == JobState.cancelled, 30, "the job to stop")
        assert time.monotonic() - asked < 15, "stopped at the next step, not at the end"
    assert request_row(request_id).status == RequestStatus.cancelled
    job = job_row(job_id)
    assert job.progress < 1.0 and job.attempt == 1
    assert artifacts(job_id) == []
    assert get_store().list(attempt_prefix(stack.tenant, request_id, job_id, 1)) == []


def test_6_two_workers_broker_redelivers_the_slow_job_it_runs_once(stack: Stack) -> None:
    request_id, job_id = seed_request(stack.tenant, stack.model, params={**FAST_PARAMS, "steps": 80})
    stack.worker("w1")
    stack.worker("w2")
    assert stack.ring() == 1
    wait_for(lambda: _running_in_distill(job_id), 90, "one worker to run the job")
    client = redis.Redis.from_url(stack.redis.url)
    # Age the unacked message past its visibility timeout: the idle worker's restore sweep puts it back
    # on the queue and takes it — the broker redelivers a message whose task is still running.
    for tag in client.zrange("unacked_index", 0, -1):
        client.zadd("unacked_index", {tag: 0})
    wait_for(lambda: "'skipped'" in stack.procs.logs(), 60, "the redelivered doorbell to be skipped")
    wait_for(lambda: request_row(request_id).status == RequestStatus.succeeded, 120, "the job")
    job = job_row(job_id)
    assert job.attempt == 1
    assert _outcomes(job_id) == [("job.attempt_started", 1, None), ("job.attempt_finished", 1, "succeeded")]
    assert {a.attempt for a in artifacts(job_id)} == {1}
    logs = stack.procs.logs()
    assert logs.count("Task lethe.run_job[") >= 2, "the message was delivered twice"


def test_7_worker_sigterm_hands_the_running_job_back(stack: Stack) -> None:
    import signal

    request_id, job_id = seed_request(stack.tenant, stack.model, params=SLOW)
    first = stack.worker("w1")
    assert stack.ring() == 1
    wait_for(lambda: _running_in_distill(job_id), 90, "the job to be mid-distillation")
    first.send_signal(signal.SIGTERM)  # warm shutdown, as `docker stop` or a deploy sends it
    assert first.wait(timeout=60) == 0
    job = job_row(job_id)
    assert job.state == JobState.queued and job.stage == "released" and job.attempt == 1
    assert request_row(request_id).status == RequestStatus.queued
    _set_params(request_id, FAST_PARAMS)
    stack.worker("w2")
    stack.beat()  # re-rings the released job (its doorbell was acknowledged with the released attempt)
    wait_for(lambda: request_row(request_id).status == RequestStatus.succeeded, 120, "the job on the next worker")
    assert _outcomes(job_id) == [
        ("job.attempt_started", 1, None), ("job.attempt_finished", 1, "released"),
        ("job.attempt_started", 2, None), ("job.attempt_finished", 2, "succeeded"),
    ]
