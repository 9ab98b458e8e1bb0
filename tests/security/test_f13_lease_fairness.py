"""Leasing is fair between tenants: among jobs of equal priority, the tenant with fewer running jobs goes first.

Without it, one tenant's backlog (oldest first) holds every worker while another tenant's single job waits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from core.db import unit_of_work
from core.jobs import lifecycle as jobs
from core.jobs.states import JobKind
from tests.api_support import ApiEnv, build_env
from tests.integration.worker_support import use_database


@pytest.fixture
def env(any_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    use_database(monkeypatch, any_db_url)
    yield from build_env(any_db_url)


def _job(env: ApiEnv, tenant: str, model_id: uuid.UUID, priority: int = 0) -> uuid.UUID:
    with unit_of_work() as s:
        return jobs.create_job(s, tenant_id=env.principal(tenant).tenant_id, kind=JobKind.erase,
                               model_id=model_id, priority=priority).id


def _lease(worker: str) -> uuid.UUID | None:
    with unit_of_work() as s:
        held = jobs.lease_next(s, worker, 60, kinds=[JobKind.erase])  # (registering queued validations)
        return held.job_id if held else None


def test_a_tenants_backlog_does_not_starve_another_tenant(env: ApiEnv) -> None:
    big, small = env.ready_model("big"), env.ready_model("small")
    backlog = [_job(env, "big", big) for _ in range(4)]   # older
    lone = _job(env, "small", small)                        # newest

    assert _lease("w1") == backlog[0], "nobody runs anything yet: oldest first"
    assert _lease("w2") == lone, "'big' already runs a job, 'small' none: 'small' goes next"
    assert _lease("w3") == backlog[1], "one running each: oldest first again"
    urgent = _job(env, "big", big, priority=5)
    assert _lease("w4") == urgent, "priority still comes first"
    assert _lease("w5") == backlog[2]
