"""Batches that make versions, on a tiny pipeline through the API on Postgres + S3: a chain (`combined: false`)
run by a real Celery worker makes one version per concept in order (each request trained on the version the
one before made, queued only once that version is stored, applied on success); a combined batch makes one
request and, applied, one version. A chain whose request fails, whose request cannot be applied (stale), or
whose version cannot be stored is cancelled from there on, with errors naming the request before."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select

from core.audit.models import AuditEvent
from core.config import get_settings
from core.db import unit_of_work
from core.jobs.models import Artifact, Job
from core.outbox.relay import relay
from core.spare.errors import ErasureInputError
from tests.api_support import ApiEnv
from tests.integration.versions_support import run_jobs, versions_env
from tests.integration.worker_support import audit_actions, child_env, processes, tiny_model_dir, wait_for

pytestmark = pytest.mark.slow(minutes=0.5)
FAST = {"steps": 10, "lr": 3e-3, "sample_steps": 2, "max_rounds": 1}


def _concepts(*targets: str) -> list[dict[str, Any]]:
    return [{"target": t, "kind": "object", "prompts": [f"a {t}"]} for t in targets]


def _register(env: ApiEnv, auth: dict[str, str]) -> str:
    source = tiny_model_dir(env.model_root)
    r = env.client.post("/v1/models", json={"name": f"tiny-{uuid.uuid4().hex[:6]}", "source_uri": f"file://{source}"},
                        headers=auth)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _batch(env: ApiEnv, auth: dict[str, str], model_id: str, *targets: str, **extra: Any) -> dict[str, Any]:
    body = {"models": {"ids": [model_id]}, "concepts": _concepts(*targets), "params": FAST, **extra}
    r = env.client.post("/v1/erasures/batch", json=body, headers=auth)
    assert r.status_code == 202, r.text
    return r.json()


def _get(env: ApiEnv, auth: dict[str, str], path: str) -> dict[str, Any]:
    r = env.client.get(path, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


def _jobs(request_id: str) -> list[Job]:
    with unit_of_work() as s:
        rows = list(s.scalars(select(Job).where(Job.request_id == uuid.UUID(request_id))))
        for row in rows:
            s.expunge(row)
        return rows


def _event(action: str, subject: str, **payload: Any) -> AuditEvent:
    with unit_of_work() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.subject == subject)
                         .order_by(AuditEvent.seq))
        (row,) = [r for r in rows if all(r.payload.get(k) == v for k, v in payload.items())]
        s.expunge(row)
        return row


@pytest.fixture
def worker_env(pg_url: str, redis_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    # The tiny random pipeline tests the machinery: no noise-space floor (as worker_support.stack_settings).
    yield from versions_env(pg_url, s3_endpoint, monkeypatch, verify_min_gap_closure=0, broker_url=redis_url,
                            job_progress_interval_seconds=0.5, broker_unacked_restore_interval=1)


def test_a_chain_makes_one_version_per_concept_with_a_celery_worker(worker_env: ApiEnv, redis_url: str,
                                                                    tmp_path: Any) -> None:
    import redis

    from worker.app import make_app
    from worker.publisher import CeleryPublisher

    env, auth = worker_env, worker_env.auth()
    c = env.client
    redis.Redis.from_url(redis_url).delete("gpu", "default")  # doorbells earlier tests of this session left
    publisher = CeleryPublisher(make_app(get_settings()))

    def rung(predicate: Any) -> Any:
        """The predicate, after publishing the doorbells the worker's transactions queued (the relay)."""
        def check() -> Any:
            with unit_of_work() as s:
                relay(s, publisher)
            return predicate()
        return check

    with processes(tmp_path) as procs:
        procs.worker(child_env(), queues="gpu,default")
        mid = _register(env, auth)
        wait_for(rung(lambda: _get(env, auth, f"/v1/models/{mid}")["status"] == "ready"), 120, "validation")

        batch = _batch(env, auth, mid, "circle", "square", combined=False)
        first, second = batch["requests"]
        assert (first["status"], first["model_version"]) == ("queued", 1)
        assert (second["status"], second["model_version"], second["after_request_id"]) == ("waiting", None,
                                                                                          first["id"])
        assert _jobs(second["id"]) == []

        def head_ready(number: int) -> bool:
            listed = _get(env, auth, f"/v1/models/{mid}/versions")
            return listed["head"] == number and listed["items"][-1]["status"] == "ready"

        wait_for(rung(lambda: head_ready(3)), 300, "versions 2 and 3")

        # The combined batch: one request with both concepts, not applied (the model has no auto_apply) until
        # someone applies it, then one version.
        combined = _batch(env, auth, mid, "star", "heart")
        (one,) = combined["requests"]
        assert one["targets"] == ["star", "heart"] and one["model_version"] == 3
        wait_for(rung(lambda: _get(env, auth, f"/v1/erasures/{one['id']}")["status"] in ("succeeded", "failed")),
                 300, "the combined request")
        assert _get(env, auth, f"/v1/erasures/{one['id']}")["status"] == "succeeded"
        assert _get(env, auth, f"/v1/models/{mid}/versions")["head"] == 3, "a combined batch applies as before"
        r = c.post(f"/v1/models/{mid}/versions", json={"erasure_id": one["id"]}, headers=auth)
        assert r.status_code == 201, r.text
        wait_for(rung(lambda: head_ready(4)), 120, "version 4")

    assert _get(env, auth, f"/v1/models/{mid}")["auto_apply"] is False
    versions = _get(env, auth, f"/v1/models/{mid}/versions")["items"]
    assert [(v["number"], v["parent"], v["erasure_id"]) for v in versions] == [
        (1, None, None), (2, 1, first["id"]), (3, 2, second["id"]), (4, 3, one["id"])]
    assert [[x["target"] for x in v["erased_concepts"]] for v in versions] == [
        [], ["circle"], ["circle", "square"], ["circle", "square", "star", "heart"]]
    assert versions[2]["adapter"]["exact"] and versions[2]["adapter"]["rank"] > versions[1]["adapter"]["rank"]

    # The second request ran on v2, queued only once v2 was stored (its one job never waited on a retry).
    two = _get(env, auth, f"/v1/erasures/{second['id']}")
    assert two["status"] == "succeeded" and two["model_version"] == 2 and two["apply_on_success"] is True
    stored = _event("model.version.stored", f"model:{mid}", version=2)
    released = _event("erasure.released", f"erasure:{second['id']}")
    assert released.seq > stored.seq and released.payload["model_version"] == 2
    (job,) = _jobs(second["id"])
    assert job.created_at >= stored.at and job.attempt == 1 and str(job.id) == released.payload["job_id"]
    lineage = _get(env, auth, f"/v1/erasures/{second['id']}/certificate")["certificate"]["lineage"]
    assert lineage["model_version"] == 2
    assert lineage["previous_certificate_sha256"] == versions[1]["certificate_sha256"]
    assert [(x["target"], x["version"]) for x in lineage["erased_concepts"]] == [("circle", 2), ("square", None)]
    agg = _get(env, auth, f"/v1/batches/{batch['id']}")
    assert agg["status"] == "succeeded" and [(x["id"], x["model_version"]) for x in agg["requests"]] == [
        (first["id"], 1), (second["id"], 2)]


@pytest.fixture
def env(pg_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    yield from versions_env(pg_url, s3_endpoint, monkeypatch, verify_min_gap_closure=0)


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise ErasureInputError("the training prompts are unusable")


def test_a_chain_stops_where_a_request_does_not_become_a_version(env: ApiEnv) -> None:
    c, auth = env.client, env.auth()
    mid = _register(env, auth)
    assert run_jobs() == [("validate_model", "succeeded")]

    # The first request fails: the rest of its chain is cancelled, naming it.
    batch = _batch(env, auth, mid, "circle", "square", "star", combined=False)
    first, second, third = batch["requests"]
    assert run_jobs(_boom) == [("erase", "failed")]
    one, two, three = (_get(env, auth, f"/v1/erasures/{x['id']}") for x in (first, second, third))
    assert one["status"] == "failed" and "unusable" in one["error"]
    assert two["status"] == three["status"] == "cancelled"
    assert two["error"] == f"cancelled: erasure request {first['id']}, which it runs after, failed: {one['error']}"
    assert first["id"] in three["error"] and second["id"] in three["error"]
    assert _jobs(second["id"]) == [] and _jobs(third["id"]) == []
    assert _get(env, auth, f"/v1/batches/{batch['id']}")["status"] == "failed"

    # The second request cannot be applied (someone rolled the head back under it): the third is cancelled.
    first, second, third = _batch(env, auth, mid, "circle", "square", "star", combined=False)["requests"]
    assert run_jobs(rounds=2) == [("erase", "succeeded"), ("apply_version", "succeeded")]
    assert _get(env, auth, f"/v1/erasures/{second['id']}")["status"] == "queued", "released on v2"
    r = c.put(f"/v1/models/{mid}/head", json={"version": 1, "reason": "v2 fails QA"}, headers=auth)
    assert r.status_code == 200, r.text
    assert run_jobs() == [("erase", "succeeded")]
    three = _get(env, auth, f"/v1/erasures/{third['id']}")
    assert three["status"] == "cancelled" and three["error"].startswith(
        f"cancelled: erasure request {second['id']}, which it runs after, succeeded but was not applied: "
        f"erasure request {second['id']} ran on version 2, but the head is version 1")
    skipped = [p for a, p in audit_actions(f"erasure:{second['id']}") if a == "model.version.auto_apply_skipped"]
    assert skipped and skipped[0]["kind"] == "stale-base"
    assert [v["number"] for v in _get(env, auth, f"/v1/models/{mid}/versions")["items"]] == [1, 2]

    # The first request's version cannot be stored (its fused weights are gone): the second is cancelled.
    first, second = _batch(env, auth, mid, "triangle", "heart", combined=False)["requests"]
    assert run_jobs(rounds=1) == [("erase", "succeeded")]
    with unit_of_work() as s:
        (job,) = s.scalars(select(Job.id).where(Job.request_id == uuid.UUID(first["id"])))
        s.execute(delete(Artifact).where(Artifact.job_id == job, Artifact.name.like("fused/%")))
    assert run_jobs() == [("apply_version", "succeeded")]
    v3 = _get(env, auth, f"/v1/models/{mid}/versions/3")
    assert v3["status"] == "failed" and v3["erasure_id"] == first["id"]
    two = _get(env, auth, f"/v1/erasures/{second['id']}")
    assert two["status"] == "cancelled" and two["error"].startswith(
        f"cancelled: erasure request {first['id']}, which it runs after, was applied as version 3, which could "
        "not be stored:")
    assert _get(env, auth, f"/v1/models/{mid}/versions")["head"] == 1
