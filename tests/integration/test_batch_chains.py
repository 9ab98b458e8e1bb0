"""Batches with `combined: false` over HTTP on Postgres, up to the point where erasures would run: one chain
per model (one request per concept, each waiting for the version the one before it makes), how a chain ends
early (its first request cancelled or rejected, a waiting one cancelled), approvals in either order, and
schedules that submit chains. tests/integration/test_batch_versions.py runs chains to the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from core.db import unit_of_work
from core.jobs.models import Job
from core.outbox.models import OutboxMessage
from core.schedules import service as schedules
from core.schedules.models import Schedule, ScheduleRun
from core.timeutil import utcnow
from tests.api_support import ApiEnv, build_env
from tests.integration.worker_support import audit_actions, use_database

CONCEPTS = [{"target": "circle", "kind": "object"}, {"target": "striped", "kind": "style"},
            {"target": "star", "kind": "object"}]


@pytest.fixture
def env(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    use_database(monkeypatch, pg_url)
    yield from build_env(pg_url)


def _batch(env: ApiEnv, headers: dict[str, str], *models: uuid.UUID, concepts: list[dict[str, Any]] = CONCEPTS,
           **extra: Any) -> dict[str, Any]:
    body = {"models": {"ids": [str(m) for m in models]}, "concepts": concepts, "params": {"steps": 5}, **extra}
    r = env.client.post("/v1/erasures/batch", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()


def _chain(batch: dict[str, Any], model: uuid.UUID) -> list[dict[str, Any]]:
    return [x for x in batch["requests"] if x["model_id"] == str(model)]


def _jobs(request_id: str) -> list[Job]:
    with unit_of_work() as s:
        return list(s.scalars(select(Job).where(Job.request_id == uuid.UUID(request_id))))


def _request(env: ApiEnv, request_id: str, headers: dict[str, str]) -> dict[str, Any]:
    r = env.client.get(f"/v1/erasures/{request_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_chain_per_model_and_cancelling_it(env: ApiEnv) -> None:
    c, h = env.client, env.auth()
    m1, m2 = env.ready_model(), env.ready_model()
    batch = _batch(env, h, m1, m2, combined=False)
    assert batch["combined"] is False and batch["size"] == 6
    assert batch["status"] == "in_progress" and batch["counts"] == {"queued": 2, "waiting": 4}
    for model in (m1, m2):
        chain = _chain(batch, model)
        assert [x["targets"] for x in chain] == [["circle"], ["striped"], ["star"]]
        assert [x["status"] for x in chain] == ["queued", "waiting", "waiting"]
        assert [x["model_version"] for x in chain] == [1, None, None], "the first runs on the head"
        assert [x["after_request_id"] for x in chain] == [None, chain[0]["id"], chain[1]["id"]]
        assert [len(_jobs(x["id"])) for x in chain] == [1, 0, 0], "a waiting request has no job"
    first, second, third = _chain(batch, m1)
    got = _request(env, second["id"], h)
    assert got["after_request_id"] == first["id"] and got["apply_on_success"] is True
    assert got["model_version"] is None and [x["target"] for x in got["concepts"]] == ["striped"]
    assert _request(env, first["id"], h)["apply_on_success"] is True
    r = c.post(f"/v1/erasures/{second['id']}/approve", headers=env.auth(name="approver"))
    assert r.status_code == 409, "nothing to approve"
    r = c.post(f"/v1/erasures/{second['id']}/rebase", headers=h)
    assert r.status_code == 409 and r.json()["after_request_id"] == first["id"], "it has not run on any version"

    # Cancelling the first request of m1's chain cancels the rest of that chain, each naming the one before.
    r = c.post(f"/v1/erasures/{first['id']}/cancel", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "cancelled", r.text
    two, three = _request(env, second["id"], h), _request(env, third["id"], h)
    assert two["status"] == three["status"] == "cancelled"
    assert two["error"] == f"cancelled: erasure request {first['id']}, which it runs after, was cancelled"
    assert three["error"].startswith(f"cancelled: erasure request {second['id']}, which it runs after, was "
                                     f"cancelled because erasure request {first['id']}")
    assert _jobs(second["id"]) == [] and _jobs(third["id"]) == []
    (event,) = [p for a, p in audit_actions(f"erasure:{second['id']}") if a == "erasure.cancelled"]
    assert event == {"after_request_id": first["id"], "reason": two["error"]}
    with unit_of_work() as s:
        announced = [m.payload["data"] for m in s.scalars(select(OutboxMessage))
                     if m.payload.get("type") == "erasure.cancelled"]
    assert {e["request_id"]: (e["job_id"], e["error"]) for e in announced} == {
        second["id"]: (None, two["error"]), third["id"]: (None, three["error"])}

    # m2's chain is untouched; cancelling its waiting second request takes only the third along.
    first2, second2, third2 = _chain(batch, m2)
    assert c.post(f"/v1/erasures/{second2['id']}/cancel", headers=h).json()["status"] == "cancelled"
    assert _request(env, third2["id"], h)["status"] == "cancelled"
    assert _request(env, first2["id"], h)["status"] == "queued"
    agg = c.get(f"/v1/batches/{batch['id']}", headers=h).json()
    assert agg["counts"] == {"cancelled": 5, "queued": 1} and agg["status"] == "in_progress"
    assert [x["id"] for x in agg["requests"]] == [x["id"] for x in batch["requests"]], "chain order kept"


def test_combined_batches_file_one_request_per_model(env: ApiEnv) -> None:
    h = env.auth()
    model = env.ready_model()
    batch = _batch(env, h, model)
    assert batch["combined"] is True and batch["size"] == 1
    (one,) = batch["requests"]
    assert one["targets"] == ["circle", "striped", "star"] and one["after_request_id"] is None
    assert one["status"] == "queued" and one["model_version"] == 1
    assert _request(env, one["id"], h)["apply_on_success"] is False, "applied as the model's auto_apply says"
    bad = env.client.post("/v1/erasures/batch", headers=h, json={
        "models": {"ids": [str(model)]}, "concepts": CONCEPTS, "combined": "sometimes"})
    assert bad.status_code == 422 and "combined" in bad.text
    twice = env.client.post("/v1/erasures/batch", headers=h, json={
        "models": {"ids": [str(model)]}, "concepts": [CONCEPTS[0], CONCEPTS[0]], "combined": False})
    assert twice.status_code == 422 and "listed twice" in twice.text


def test_chains_under_four_eyes(env: ApiEnv) -> None:
    c = env.client
    submitter, approver = env.auth(require_approval=True), env.auth(name="approver")
    model = env.ready_model()
    batch = _batch(env, submitter, model, concepts=CONCEPTS[:2], combined=False)
    first, second = batch["requests"]
    assert [first["status"], second["status"]] == ["awaiting_approval", "awaiting_approval"]
    # Approved before the request it runs after made its version: it waits, still without a job.
    r = c.post(f"/v1/erasures/{second['id']}/approve", headers=approver)
    assert r.status_code == 200 and r.json()["status"] == "waiting", r.text
    assert _jobs(second["id"]) == []
    r = c.post(f"/v1/erasures/{first['id']}/approve", headers=approver)
    assert r.json()["status"] == "queued" and len(_jobs(first["id"])) == 1

    # Rejecting a chain's first request cancels the rest, with the reason.
    first, second = _batch(env, submitter, model, concepts=CONCEPTS[:2], combined=False)["requests"]
    r = c.post(f"/v1/erasures/{first['id']}/reject", json={"reason": "notice incomplete"}, headers=approver)
    assert r.json()["status"] == "rejected", r.text
    got = _request(env, second["id"], approver)
    assert got["status"] == "cancelled"
    assert got["error"] == (f"cancelled: erasure request {first['id']}, which it runs after, was rejected: "
                            "notice incomplete")


def test_a_schedule_submits_chains(env: ApiEnv) -> None:
    c, h = env.client, env.auth()
    model = env.ready_model()
    template = {"models": {"ids": [str(model)]}, "concepts": CONCEPTS[:2], "params": {"steps": 5}, "combined": False}
    r = c.post("/v1/schedules", json={"cron": "0 3 * * *", "template": template}, headers=h)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["template"]["combined"] is False
    assert c.get(f"/v1/schedules/{sid}", headers=h).json()["template"]["combined"] is False
    with unit_of_work() as s:
        stored = s.get(Schedule, uuid.UUID(sid))
        assert stored is not None and stored.template["combined"] is False
        s.execute(update(Schedule).where(Schedule.id == uuid.UUID(sid))
                  .values(next_run_at=utcnow() - timedelta(minutes=1)))
    with unit_of_work() as s:
        assert schedules.run_due(s) == 1
    with unit_of_work() as s:
        run = s.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == uuid.UUID(sid))).one()
        batch_id, requests = run.batch_id, run.requests
    assert requests == 2
    batch = c.get(f"/v1/batches/{batch_id}", headers=h).json()
    assert batch["combined"] is False and batch["schedule_id"] == sid
    first, second = batch["requests"]
    assert (first["status"], second["status"]) == ("queued", "waiting")
    assert second["after_request_id"] == first["id"] and second["targets"] == ["striped"]
