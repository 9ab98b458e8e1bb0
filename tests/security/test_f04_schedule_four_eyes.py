"""Four eyes holds for scheduled requests, and a revoked key's schedules stop submitting.

A scheduled run submits as the key that created the schedule, so that key cannot approve the requests its
schedule submitted. Revoking the key pauses its schedules (audited); a schedule whose key was revoked some
other way is paused at its next due slot instead of running.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.erasure.states import RequestStatus
from core.schedules import service as schedules
from core.schedules.models import Schedule, ScheduleRun
from core.tenancy import service as tenancy
from core.tenancy.keys import key_prefix
from core.tenancy.models import ApiKey
from core.timeutil import utcnow
from tests.api_support import ApiEnv, build_env
from tests.integration.worker_support import use_database

P = "https://lethe.dev/problems/"
TEMPLATE = {"models": {"all_ready": True}, "concepts": [{"target": "circle", "kind": "object"}],
            "params": {"steps": 5}}


@pytest.fixture
def env(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    use_database(monkeypatch, pg_url)
    yield from build_env(pg_url)


def _schedule(env: ApiEnv, key: str) -> uuid.UUID:
    r = env.client.post("/v1/schedules", json={"cron": "0 3 * * *", "template": TEMPLATE},
                        headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


def _make_due(schedule_id: uuid.UUID) -> None:
    with unit_of_work() as s:
        s.execute(update(Schedule).where(Schedule.id == schedule_id)
                  .values(next_run_at=utcnow() - timedelta(minutes=1)))


def _requests_of(schedule_id: uuid.UUID) -> list[ErasureRequest]:
    with unit_of_work() as s:
        rows = list(s.scalars(select(ErasureRequest).where(ErasureRequest.schedule_id == schedule_id)))
        for row in rows:
            s.expunge(row)
        return rows


def _events(env: ApiEnv, schedule_id: uuid.UUID) -> list[dict]:
    return env.client.get(f"/v1/audit/events?subject=schedule:{schedule_id}", headers=env.auth()).json()["items"]


def test_the_schedule_creator_cannot_approve_what_the_schedule_submitted(env: ApiEnv) -> None:
    alice = env.key("acme", "admin", name="alice", require_approval=True)
    bob = env.key("acme", "admin", name="bob")
    env.ready_model()
    sid = _schedule(env, alice)
    _make_due(sid)
    with unit_of_work() as s:
        assert schedules.run_due(s) == 1
    (request,) = _requests_of(sid)
    assert request.status == RequestStatus.awaiting_approval
    with unit_of_work() as s:
        alice_id = s.scalars(select(ApiKey.id).where(ApiKey.prefix == key_prefix(alice))).one()
    assert request.submitted_by == f"key:{alice_id}", "a scheduled request names the key behind the schedule"

    r = env.client.post(f"/v1/erasures/{request.id}/approve", headers={"Authorization": f"Bearer {alice}"})
    assert r.status_code == 403, r.text
    assert r.json()["type"] == P + "four-eyes"
    r = env.client.post(f"/v1/erasures/{request.id}/approve", headers={"Authorization": f"Bearer {bob}"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "queued" and r.json()["approved_by"] != request.submitted_by


def test_requests_written_as_the_schedule_still_need_another_key(env: ApiEnv) -> None:
    # Rows whose submitter is the schedule itself (as older runs wrote them) are judged by the schedule's creator.
    alice = env.key("acme", "admin", name="alice", require_approval=True)
    env.ready_model()
    sid = _schedule(env, alice)
    _make_due(sid)
    with unit_of_work() as s:
        schedules.run_due(s)
    (request,) = _requests_of(sid)
    with unit_of_work() as s:
        s.execute(update(ErasureRequest).where(ErasureRequest.id == request.id)
                  .values(submitted_by=f"schedule:{sid}"))
    r = env.client.post(f"/v1/erasures/{request.id}/approve", headers={"Authorization": f"Bearer {alice}"})
    assert r.status_code == 403 and r.json()["type"] == P + "four-eyes", r.text


def test_revoking_a_key_pauses_its_schedules(env: ApiEnv) -> None:
    carol = env.key("acme", "erasures:write,erasures:read", name="carol")
    dave = env.key("acme", "erasures:write,erasures:read", name="dave")
    env.ready_model()
    revoked, kept = _schedule(env, carol), _schedule(env, dave)
    with unit_of_work() as s:
        tenancy.revoke_key(s, carol)
    got = env.client.get(f"/v1/schedules/{revoked}", headers=env.auth()).json()
    assert got["enabled"] is False
    paused = [e for e in _events(env, revoked) if e["action"] == "schedule.paused"]
    assert len(paused) == 1 and "revoked" in paused[0]["payload"]["reason"]
    assert env.client.get(f"/v1/schedules/{kept}", headers=env.auth()).json()["enabled"] is True

    _make_due(revoked)
    _make_due(kept)
    with unit_of_work() as s:
        assert schedules.run_due(s) == 1, "only the live key's schedule runs"
    assert _requests_of(revoked) == []
    assert len(_requests_of(kept)) == 1


def test_a_due_schedule_of_a_revoked_key_is_paused_not_run(env: ApiEnv) -> None:
    # The key is revoked without going through revoke_key (e.g. directly in the database): the run itself checks.
    erin = env.key("acme", "erasures:write,erasures:read", name="erin")
    env.ready_model()
    sid = _schedule(env, erin)
    with unit_of_work() as s:
        s.execute(update(ApiKey).where(ApiKey.prefix == key_prefix(erin)).values(revoked_at=utcnow()))
    _make_due(sid)
    with unit_of_work() as s:
        assert schedules.run_due(s) == 0
    assert _requests_of(sid) == []
    with unit_of_work() as s:
        assert s.get(Schedule, sid).enabled is False
        assert list(s.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == sid))) == []
    actions = [e["action"] for e in _events(env, sid)]
    assert actions == ["schedule.created", "schedule.paused"]
    with unit_of_work() as s:  # paused schedules are not due any more
        assert schedules.run_due(s, now=utcnow() + timedelta(days=2)) == 0
