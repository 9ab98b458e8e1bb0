"""Celery workers for real: `celery -A worker.app worker` processes, Redis, Postgres and an S3 server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.config import Settings, get_settings
from core.db import unit_of_work
from core.erasure.states import RequestStatus
from core.jobs.lifecycle import create_job
from core.jobs.states import JobKind, JobState
from core.outbox.relay import relay
from core.registry.models import ModelStatus, RegisteredModel
from core.spare.loading import fingerprint
from core.storage import get_store
from core.storage.s3 import S3Store
from tests.integration.worker_support import (
    artifacts,
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
from worker.app import celery_config, make_app
from worker.publisher import CeleryPublisher


def test_celery_settings_give_at_least_once_delivery() -> None:
    conf = celery_config(Settings(broker_url="redis://x:6379/0"))
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is True
    vt = conf["broker_transport_options"]["visibility_timeout"]
    assert conf["result_backend_transport_options"]["visibility_timeout"] == vt
    assert conf["task_routes"]["lethe.sweep"]["queue"] == "default"
    # Time limits are the lease keeper's: Celery's own (and worker recycling) do nothing under --pool=solo.
    assert not {"task_soft_time_limit", "task_time_limit", "worker_max_tasks_per_child"} & set(conf)
    assert "lethe.run_job" not in conf["task_routes"], "doorbells go to the lane of their job's kind"


def stack_settings(redis_url: str, s3_endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    return {
        "broker_url": redis_url, "store_url": f"s3://{bucket}/lethe", "s3_endpoint_url": s3_endpoint,
        "verify_min_gap_closure": "0", "job_progress_interval_seconds": "0.5",
        "broker_unacked_restore_interval": "1", **extra,
    }


@pytest.mark.slow(minutes=0.3)
def test_worker_runs_erasures_and_validations(
    pg_url: str, redis_url: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    tiny_model: Path,  # noqa: F811
) -> None:
    settings = stack_settings(redis_url, s3_endpoint, f"b{uuid.uuid4().hex[:10]}")
    use_database(monkeypatch, pg_url, **settings)
    store = get_store()
    assert isinstance(store, S3Store)
    store.ensure_bucket()
    tenant = seed_tenant()
    model = seed_model(tenant, tiny_model, fingerprint="fp-worker")
    (r1, j1), (r2, j2) = seed_request(tenant, model), seed_request(tenant, model)
    pending = seed_model(tenant, tiny_model, status=ModelStatus.pending)
    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    (broken_dir / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    broken = seed_model(tenant, broken_dir, status=ModelStatus.pending)
    with unit_of_work() as s:
        v1 = create_job(s, tenant_id=tenant, kind=JobKind.validate_model, model_id=pending).id
        v2 = create_job(s, tenant_id=tenant, kind=JobKind.validate_model, model_id=broken).id
    app = make_app(get_settings())
    import redis

    broker = redis.Redis.from_url(redis_url)
    broker.delete("gpu", "default")  # doorbells earlier tests of this session left behind
    with processes(tmp_path) as procs:
        with unit_of_work() as s:
            assert relay(s, CeleryPublisher(app)) == 4
        assert (broker.llen("gpu"), broker.llen("default")) == (2, 2), "validations ring the default lane"
        procs.worker(child_env(**settings, database_url=pg_url))
        procs.worker(child_env(**settings, database_url=pg_url), queues="default", name="light")
        for job_id in (j1, j2, v1, v2):
            wait_for(lambda j=job_id: job_row(j).state == JobState.succeeded, 120, f"job {job_id}")
        log = procs.logs(tail=None)
    for request_id, job_id in ((r1, j1), (r2, j2)):
        assert request_row(request_id).status == RequestStatus.succeeded
        rows = artifacts(job_id)
        assert rows and all(r.attempt == 1 for r in rows)
        for row in rows:
            assert row.key.startswith(f"tenants/{tenant}/requests/{request_id}/jobs/{job_id}/attempt-1/")
            assert len(store.get(row.key, expected_sha256=row.sha256)) == row.size
    assert log.count("model loaded") == 1 and log.count("model cache hit") == 1, "second job reused the model"
    with unit_of_work() as s:
        ok, bad = s.get(RegisteredModel, pending), s.get(RegisteredModel, broken)
        assert ok.status == ModelStatus.ready and ok.architecture == "sd1"
        assert ok.fingerprint == fingerprint(tiny_model)
        assert bad.status == ModelStatus.invalid and "FluxPipeline" in (bad.status_reason or "")


def test_cli_commands_need_a_broker_and_beat_sweeps_once(
    pg_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    use_database(monkeypatch, pg_url)
    embedded = child_env(database_url=pg_url, broker_url="")
    for command in (["worker", "--queues", "gpu"], ["beat", "--once"]):
        out = subprocess.run([sys.executable, "-m", "core.cli", *command], env=embedded, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2 and "needs a broker" in out.stderr and "Traceback" not in out.stderr
    bad = subprocess.run([sys.executable, "-m", "core.cli", "worker", "--queues", "cpu"],
                         env=child_env(database_url=pg_url, broker_url=redis_url), capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "unknown queue" in bad.stderr
    tenant = seed_tenant()
    model = seed_model(tenant, tmp_path)
    seed_request(tenant, model)
    once = subprocess.run([sys.executable, "-m", "core.cli", "beat", "--once"],
                          env=child_env(database_url=pg_url, broker_url=redis_url), capture_output=True, text=True,
                          timeout=60)
    assert once.returncode == 0, once.stderr
    assert "'published': 1" in once.stdout
    import redis

    assert redis.Redis.from_url(redis_url).llen("gpu") == 1, "the doorbell is in the gpu queue"
