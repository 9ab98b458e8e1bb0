"""Helpers for the model-version tests: an API on Postgres + a moto S3 store, jobs run by the worker code."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.db import unit_of_work
from core.jobs.models import Job
from core.jobs.runner import execute
from core.jobs.states import JobState
from core.storage import get_store
from tests.api_support import ApiEnv, build_env
from tests.integration.worker_support import use_database


def versions_env(pg_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> Iterator[ApiEnv]:
    """The API and this process's worker settings on one database and one S3 bucket."""
    store = {"store_url": f"s3://b{uuid.uuid4().hex[:10]}/lethe", "s3_endpoint_url": s3_endpoint}
    use_database(monkeypatch, pg_url, **store, **{k: str(v) for k, v in extra.items()})
    get_store().ensure_bucket()  # type: ignore[attr-defined]
    yield from build_env(pg_url, **store, **extra)

def run_jobs(erase_fn: Any = None, *, rounds: int = 10) -> list[tuple[str, str]]:
    """Run every queued job with the worker's own code, oldest first, until none is left: (kind, outcome)."""
    done: list[tuple[str, str]] = []
    for _ in range(rounds):
        with unit_of_work() as s:
            queued = list(s.execute(select(Job.id, Job.kind).where(Job.state == JobState.queued)
                                    .order_by(Job.created_at)))
        if not queued:
            return done
        for job_id, kind in queued:
            options = {"erase_fn": erase_fn} if erase_fn is not None else {}
            done.append((kind.value, execute(job_id, worker_id="test-worker", **options)))
    return done

def problem(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/" + kind), body
    return body

def save_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path
