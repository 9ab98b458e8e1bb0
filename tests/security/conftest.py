"""Helpers for the attack reproductions: a live API on Postgres (file:// or moto S3 store) and an in-process
run of a model's validation job, as a worker would run it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.config import get_settings
from core.db import unit_of_work
from core.jobs import lifecycle as jobs
from core.jobs.models import Job
from core.jobs.states import JobKind
from core.registry.models import RegisteredModel
from core.storage import get_store
from tests.api_support import ApiEnv, build_env
from tests.integration.worker_support import tiny_model, use_database


@pytest.fixture
def s3_env(pg_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    """API and in-process worker on Postgres with an s3:// store (moto over HTTP) under the prefix `lethe`."""
    bucket = f"sec-{uuid.uuid4().hex[:10]}"
    use_database(monkeypatch, pg_url, store_url=f"s3://{bucket}/lethe", s3_endpoint_url=s3_endpoint)
    for env in build_env(pg_url, store_url=f"s3://{bucket}/lethe", s3_endpoint_url=s3_endpoint):
        get_store(env.settings).ensure_bucket()  # type: ignore[attr-defined]
        yield env


@pytest.fixture
def file_env(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    """API and in-process worker on Postgres with the default file:// store."""
    use_database(monkeypatch, pg_url)
    yield from build_env(pg_url)


def validate(model_id: uuid.UUID | str) -> RegisteredModel:
    """Run the model's queued validation job here (lease → run → record), return the model row afterwards."""
    from core.jobs.runner import run_leased

    with unit_of_work() as s:
        job = s.scalars(select(Job).where(Job.model_id == uuid.UUID(str(model_id)),
                                          Job.kind == JobKind.validate_model)).one()
        held = jobs.lease(s, job.id, "security-probe", 60)
        assert held is not None
    run_leased(held, get_settings())
    with unit_of_work() as s:
        model = s.get(RegisteredModel, uuid.UUID(str(model_id)))
        assert model is not None
        s.expunge(model)
        return model


def put_folder(store: object, prefix: str, folder: Path) -> None:
    """Copy a local model folder into the object store under `prefix/`."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        store.put(f"{prefix}/{path.relative_to(folder).as_posix()}", path)  # type: ignore[attr-defined]


__all__ = ["file_env", "put_folder", "s3_env", "tiny_model", "validate"]
