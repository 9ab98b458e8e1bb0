"""Celery honours priority: a doorbell only wakes a worker of its lane, which leases the next job by the same
rule as the embedded runner (priority, due, age; SKIP LOCKED on Postgres). Real `celery worker` process,
a private redis-server, Postgres."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import redis

from core.config import get_settings
from core.db import unit_of_work
from core.jobs.lifecycle import create_job
from core.jobs.states import JobKind, JobState
from core.outbox.relay import relay
from core.registry.models import ModelStatus
from tests.integration.worker_support import (
    PrivateRedis,
    child_env,
    job_row,
    processes,
    seed_model,
    seed_tenant,
    use_database,
    wait_for,
)
from worker.app import make_app
from worker.publisher import CeleryPublisher

pytestmark = pytest.mark.timeout(240)


def minimal_model(path: Path) -> Path:
    """The smallest folder validation accepts: SD 1.x layout with one small weight file."""
    (path / "unet").mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}))
    (path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    (path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(os.urandom(1024))
    return path


def _validation(tenant: uuid.UUID, folder: Path, priority: int) -> uuid.UUID:
    model = seed_model(tenant, folder, status=ModelStatus.pending)
    with unit_of_work() as s:
        return create_job(s, tenant_id=tenant, kind=JobKind.validate_model, model_id=model, priority=priority).id


def test_a_high_priority_job_rung_last_starts_first_and_light_jobs_use_the_default_lane(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with processes(tmp_path) as procs:
        broker = PrivateRedis(procs)
        use_database(monkeypatch, pg_url, broker_url=broker.url)
        tenant = seed_tenant()
        folder = minimal_model(tmp_path / "model")
        publisher = CeleryPublisher(make_app(get_settings()))
        low = [_validation(tenant, folder, priority=0) for _ in range(6)]
        with unit_of_work() as s:
            assert relay(s, publisher) == 6
        high = _validation(tenant, folder, priority=10)
        with unit_of_work() as s:
            assert relay(s, publisher) == 1
        client = redis.Redis.from_url(broker.url)
        assert (client.llen("default"), client.llen("gpu")) == (7, 0), "validations ring the default lane"

        procs.worker(child_env(database_url=pg_url, broker_url=broker.url), queues="default")
        for job_id in [*low, high]:
            wait_for(lambda j=job_id: job_row(j).state == JobState.succeeded, 120, f"job {job_id}")
        starts = {j: job_row(j).started_at for j in [*low, high]}
        assert all(starts[high] < starts[j] for j in low), "the high-priority job ran before every low one"
        order = sorted(low, key=lambda j: starts[j])
        assert order == low, "equal priorities run oldest first"
        assert client.llen("default") == 0
