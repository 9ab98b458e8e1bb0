"""Model registry over HTTP (real Postgres)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from core.db import unit_of_work
from core.jobs.models import Job
from core.jobs.states import JobKind, JobState
from core.outbox.models import OutboxMessage
from tests.api_support import ApiEnv, api  # noqa: F401

PROBLEM = "application/problem+json"


def test_register_queues_validation_and_lists(api: ApiEnv) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    (api.model_root / "sd15").mkdir()
    r = c.post("/v1/models", json={"name": "sd15", "source_uri": f"file://{api.model_root}/sd15",
                                   "description": "base", "tags": ["sd15", "prod"]}, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "pending" and body["fingerprint"] is None
    assert r.headers["location"] == f"/v1/models/{body['id']}"
    with unit_of_work(api.engine) as s:
        job = s.scalars(select(Job).where(Job.model_id == uuid.UUID(body["id"]))).one()
        assert job.kind == JobKind.validate_model and job.state == JobState.queued
        doorbells = s.scalars(select(OutboxMessage)).all()
        assert any(m.payload.get("job_id") == str(job.id) for m in doorbells)
    assert c.get(f"/v1/models/{body['id']}", headers=h).json()["name"] == "sd15"
    # duplicate name → 409 problem
    dup = c.post("/v1/models", json={"name": "sd15", "source_uri": f"file://{api.model_root}/sd15"}, headers=h)
    assert dup.status_code == 409 and dup.headers["content-type"] == PROBLEM
    assert dup.json()["type"] == "https://lethe.dev/problems/model-name-taken"
    # list with pagination
    for i in range(3):
        api.ready_model(name=f"m{i}")
    page1 = c.get("/v1/models?limit=2", headers=h).json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = c.get(f"/v1/models?limit=2&cursor={page1['next_cursor']}", headers=h).json()
    assert len(page2["items"]) == 2 and page2["next_cursor"] is None
    names = [m["name"] for m in page1["items"] + page2["items"]]
    assert sorted(names) == ["m0", "m1", "m2", "sd15"] and len(set(names)) == 4
    ready = c.get("/v1/models?status=ready", headers=h).json()["items"]
    assert {m["name"] for m in ready} == {"m0", "m1", "m2"}


def test_source_uri_rules(api: ApiEnv, tmp_path_factory: pytest.TempPathFactory) -> None:  # noqa: F811
    c, h = api.client, api.auth()
    outside = tmp_path_factory.mktemp("outside")
    (api.model_root / "link").symlink_to(outside)
    for uri in (f"file://{outside}", f"file://{api.model_root}/link", f"file://{api.model_root}/../",
                f"file://{api.model_root}/missing", "hf://org/repo@main", "s3://bucket/models", "http://x/y"):
        r = c.post("/v1/models", json={"name": "x", "source_uri": uri}, headers=h)
        assert r.status_code == 422, (uri, r.text)
        assert r.json()["type"] == "https://lethe.dev/problems/validation"
        assert r.json()["field"] == "source_uri"


def test_cross_tenant_is_404_and_bad_input(api: ApiEnv) -> None:  # noqa: F811
    mine = api.ready_model("acme")
    theirs = api.auth("globex")
    r = api.client.get(f"/v1/models/{mine}", headers=theirs)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert api.client.get("/v1/models", headers=theirs).json()["items"] == []
    assert api.client.get("/v1/models/not-a-uuid", headers=api.auth()).status_code == 422
    assert api.client.get(f"/v1/models/{uuid.uuid4()}", headers=api.auth()).status_code == 404
    r = api.client.post("/v1/models", json={"name": "x", "source_uri": "file:///x", "extra": 1}, headers=api.auth())
    assert r.status_code == 422 and any(e["type"] == "extra_forbidden" for e in r.json()["errors"])
    assert api.client.get("/v1/models?cursor=garbage", headers=api.auth()).status_code == 422
    assert api.client.get("/v1/models?limit=101", headers=api.auth()).status_code == 422
