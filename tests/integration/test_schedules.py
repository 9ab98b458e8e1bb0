"""Schedules (exactly once per slot, missed slots coalesced) and batch erasures, over HTTP and the sweeper."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from core.batches.models import Batch
from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.erasure.states import RequestStatus
from core.schedules import service
from core.schedules.models import Schedule, ScheduleRun
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


def test_create_validate_list_delete(env: ApiEnv) -> None:
    c, h = env.client, env.auth()
    for bad, needle in [({"cron": "61 * * * *"}, "cron"), ({"cron": "* * *"}, "cron"),
                        ({"timezone": "Mars/Olympus"}, "time zone"),
                        ({"template": {"models": {}, "concepts": [{"target": "x"}]}}, "exactly one"),
                        ({"template": {"models": {"tag": "a"}, "concepts": []}}, "concepts")]:
        body = {"cron": "0 3 * * *", "template": TEMPLATE, **bad}
        r = c.post("/v1/schedules", json=body, headers=h)
        assert r.status_code == 422 and needle in r.text, (bad, r.text)
    missing = {"cron": "0 3 * * *", "template": {**TEMPLATE, "models": {"ids": [str(uuid.uuid4())]}}}
    assert c.post("/v1/schedules", json=missing, headers=h).status_code == 404
    r = c.post("/v1/schedules", json={"cron": "0 3 * * *", "timezone": "Europe/Berlin", "template": TEMPLATE},
               headers=h)
    assert r.status_code == 201, r.text
    out = r.json()
    next_run = datetime.fromisoformat(out["next_run_at"])
    assert next_run > utcnow() and next_run.astimezone(UTC).hour in (1, 2)  # 03:00 Berlin = 02:00/01:00 UTC
    assert [s["id"] for s in c.get("/v1/schedules", headers=h).json()["items"]] == [out["id"]]
    assert c.get(f"/v1/schedules/{out['id']}", headers=env.auth("other")).status_code == 404
    assert c.post("/v1/schedules", json={"cron": "0 3 * * *", "template": TEMPLATE},
                  headers=env.auth(scopes="erasures:read")).status_code == 403
    assert c.delete(f"/v1/schedules/{out['id']}", headers=h).status_code == 204
    assert c.get("/v1/schedules", headers=h).json()["items"] == []
    assert c.delete(f"/v1/schedules/{out['id']}", headers=h).status_code == 404


def _schedule(env: ApiEnv, cron: str, template: dict | None = None) -> uuid.UUID:
    r = env.client.post("/v1/schedules", json={"cron": cron, "template": template or TEMPLATE},
                        headers=env.auth())
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


def _runs(schedule_id: uuid.UUID) -> list[ScheduleRun]:
    with unit_of_work() as s:
        rows = list(s.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id)))
        for row in rows:
            s.expunge(row)
        return rows


def test_missed_slots_after_downtime_run_once(env: ApiEnv) -> None:
    models = [env.ready_model(), env.ready_model()]
    sid = _schedule(env, "*/5 * * * *")
    with unit_of_work() as s:  # the service was down for three days
        s.execute(update(Schedule).where(Schedule.id == sid).values(next_run_at=utcnow() - timedelta(days=3)))
    now = utcnow()
    with unit_of_work() as s:
        assert service.run_due(s, now=now) == 1
    with unit_of_work() as s:
        assert service.run_due(s, now=now + timedelta(seconds=1)) == 0, "next slot is in the future"
    (run,) = _runs(sid)
    assert run.slot_at <= now and now - run.slot_at < timedelta(minutes=5), "the latest missed slot"
    assert run.requests == 2 and run.error is None
    with unit_of_work() as s:
        schedule = s.get(Schedule, sid)
        assert schedule.next_run_at > now
        reqs = list(s.scalars(select(ErasureRequest).where(ErasureRequest.batch_id == run.batch_id)))
    assert sorted(r.model_id for r in reqs) == sorted(models)
    assert {r.schedule_id for r in reqs} == {sid} and {r.status for r in reqs} == {RequestStatus.queued}
    events = env.client.get(f"/v1/audit/events?subject=schedule:{sid}", headers=env.auth()).json()["items"]
    assert [e["action"] for e in events] == ["schedule.created", "schedule.ran"]
    assert events[1]["actor"] == f"schedule:{sid}"


def test_exactly_once_per_slot_with_concurrent_sweepers(env: ApiEnv) -> None:
    env.ready_model()
    sid = _schedule(env, "* * * * *")
    slot_time = utcnow()
    with unit_of_work() as s:
        s.execute(update(Schedule).where(Schedule.id == sid).values(next_run_at=slot_time - timedelta(seconds=1)))
    barrier = threading.Barrier(6)
    results: list[int] = []

    def sweeper() -> None:
        barrier.wait()
        with unit_of_work() as s:
            results.append(service.run_due(s, now=slot_time))

    threads = [threading.Thread(target=sweeper) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 1
    # Even a sweeper that finds the schedule due again for the same slot (e.g. a stale read) runs nothing:
    with unit_of_work() as s:
        s.execute(update(Schedule).where(Schedule.id == sid).values(next_run_at=slot_time - timedelta(seconds=1)))
    with unit_of_work() as s:
        assert service.run_due(s, now=slot_time) == 0
    assert len(_runs(sid)) == 1
    with unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Batch).where(Batch.schedule_id == sid)) == 1


def test_tag_selector_and_a_run_with_nothing_to_do(env: ApiEnv) -> None:
    tagged = env.ready_model()
    env.ready_model()
    with unit_of_work() as s:
        from core.registry.models import RegisteredModel

        s.get(RegisteredModel, tagged).tags = ["prod"]
    sid = _schedule(env, "0 * * * *", {**TEMPLATE, "models": {"tag": "prod"}})
    empty = _schedule(env, "0 * * * *", {**TEMPLATE, "models": {"tag": "nothing-has-this"}})
    with unit_of_work() as s:
        s.execute(update(Schedule).values(next_run_at=utcnow() - timedelta(minutes=1)))
    with unit_of_work() as s:
        assert service.run_due(s) == 2
    (run,) = _runs(sid)
    assert run.requests == 1
    (none,) = _runs(empty)
    assert none.requests == 0 and "no ready model" in none.error


def test_batch_submit_and_aggregated_status(env: ApiEnv) -> None:
    c, h = env.client, env.auth()
    m1, m2 = env.ready_model(), env.ready_model()
    body = {"models": {"ids": [str(m1), str(m2)]},
            "concepts": [{"target": "circle", "kind": "object"}, {"target": "striped", "kind": "style"}],
            "params": {"steps": 5}}
    r = c.post("/v1/erasures/batch", json=body, headers=h)
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["size"] == 2 and batch["status"] == "in_progress" and batch["counts"] == {"queued": 2}
    assert sorted(x["model_id"] for x in batch["requests"]) == sorted([str(m1), str(m2)])
    first, second = (uuid.UUID(x["id"]) for x in batch["requests"])
    got = c.get(f"/v1/erasures/{first}", headers=h).json()
    assert [x["target"] for x in got["concepts"]] == ["circle", "striped"]
    with unit_of_work() as s:
        s.execute(update(ErasureRequest).where(ErasureRequest.id == first).values(status=RequestStatus.succeeded))
        s.execute(update(ErasureRequest).where(ErasureRequest.id == second).values(status=RequestStatus.failed))
    agg = c.get(f"/v1/batches/{batch['id']}", headers=h).json()
    assert agg["status"] == "partial" and agg["counts"] == {"succeeded": 1, "failed": 1}
    assert c.get(f"/v1/batches/{batch['id']}", headers=env.auth("other")).status_code == 404
    assert c.get(f"/v1/batches/{uuid.uuid4()}", headers=h).status_code == 404
    # One bad model makes the whole batch fail: nothing is created.
    bad = {**body, "models": {"ids": [str(m1), str(uuid.uuid4())]}}
    r = c.post("/v1/erasures/batch", json=bad, headers=h)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    with unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(ErasureRequest)) == 2
    r = c.post("/v1/erasures/batch", json={**body, "params": {"steps": 0}}, headers=h)
    assert r.status_code == 422
    r = c.post("/v1/erasures/batch", json=body, headers=env.auth(scopes="erasures:read"))
    assert r.status_code == 403
