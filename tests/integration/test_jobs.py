"""Job lifecycle on SQLite and Postgres: lease (fencing), heartbeat, complete, retry/fail, expired leases."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from core.db import unit_of_work
from core.erasure.states import RequestStatus
from core.errors import StaleAttempt
from core.jobs import lifecycle as jobs
from core.jobs.runner import execute
from core.jobs.states import JobState
from core.outbox.models import OutboxMessage
from core.storage import get_store
from core.timeutil import utcnow
from tests.evidence import verified_metrics
from tests.integration.worker_support import (
    FAST_PARAMS,
    artifacts,
    audit_actions,
    job_row,
    request_row,
    seed_model,
    seed_request,
    seed_tenant,
    tiny_model,  # noqa: F401  (fixture)
    use_database,
)

VERIFIED = verified_metrics()


@pytest.fixture
def queued(any_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[uuid.UUID, uuid.UUID]:
    use_database(monkeypatch, any_db_url)
    tenant = seed_tenant()
    model = seed_model(tenant, tmp_path / "nowhere")
    return seed_request(tenant, model)


def _lease(job_id: uuid.UUID, worker: str, seconds: float = 60) -> jobs.Lease | None:
    with unit_of_work() as s:
        return jobs.lease(s, job_id, worker, seconds)


def test_lease_is_exclusive_and_fences_stale_attempts(queued: tuple[uuid.UUID, uuid.UUID]) -> None:
    request_id, job_id = queued
    first = _lease(job_id, "w1")
    assert first is not None and first.attempt == 1
    assert _lease(job_id, "w2") is None, "a running job cannot be leased again"
    assert request_row(request_id).status == RequestStatus.running
    # The lease expires (worker died): the sweeper puts it back; the next lease is attempt 2.
    with unit_of_work() as s:
        out = jobs.requeue_expired(s, now=utcnow() + timedelta(seconds=120))
    assert out == [(job_id, JobState.queued)]
    assert request_row(request_id).status == RequestStatus.queued
    second = _lease(job_id, "w2")
    assert second is not None and second.attempt == 2
    # The first worker comes back to life: every write it tries is refused.
    with pytest.raises(StaleAttempt), unit_of_work() as s:
        jobs.heartbeat(s, first, 60, stage="distill", progress=0.5)
    with pytest.raises(StaleAttempt), unit_of_work() as s:
        jobs.complete(s, first, artifacts=[], result={})
    with unit_of_work() as s:
        beat = jobs.heartbeat(s, second, 60, stage="distill", progress=0.25)
    assert beat.cancel_requested is False
    assert job_row(job_id).stage == "distill" and job_row(job_id).progress == 0.25
    art = jobs.StoredArtifact(name="report.json", key="k", size=2, sha256="0" * 64)
    with unit_of_work() as s:
        assert jobs.complete(s, second, artifacts=[art], result=VERIFIED) == JobState.succeeded
    assert job_row(job_id).state == JobState.succeeded
    req = request_row(request_id)
    assert req.status == RequestStatus.succeeded and req.metrics == VERIFIED
    assert req.certificate is not None
    assert [(a.attempt, a.name) for a in artifacts(job_id)] == [(2, "report.json")]
    actions = [a for a, _ in audit_actions(f"job:{job_id}")]
    assert actions == ["job.attempt_started", "job.lease_expired", "job.attempt_finished", "job.attempt_started",
                       "artifact.stored", "job.attempt_finished"]


def test_concurrent_leasers_one_winner(queued: tuple[uuid.UUID, uuid.UUID]) -> None:
    _, job_id = queued
    results: list[jobs.Lease | None] = []
    barrier = threading.Barrier(6)

    def grab(i: int) -> None:
        barrier.wait()
        try:
            results.append(_lease(job_id, f"w{i}"))
        except Exception:  # SQLite may report the database busy for a loser: it leased nothing
            results.append(None)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert job_row(job_id).attempt == 1


def test_retry_with_backoff_then_fail_after_max_attempts(queued: tuple[uuid.UUID, uuid.UUID]) -> None:
    request_id, job_id = queued
    now = utcnow()
    for attempt in (1, 2):
        held = _lease(job_id, "w")
        assert held is not None and held.attempt == attempt
        with unit_of_work() as s:
            state = jobs.fail(s, held, "store down", retryable=True, backoff_base=10, now=now)
        assert state == JobState.queued
        job = job_row(job_id)
        assert job.not_before is not None
        assert (job.not_before - now).total_seconds() == pytest.approx(10 * 2 ** (attempt - 1), abs=1)
        assert _lease(job_id, "w") is None, "not leasable before its backoff has passed"
        with unit_of_work() as s:
            s.get(type(job), job_id).not_before = None  # fast-forward the backoff
    held = _lease(job_id, "w")
    assert held is not None and held.attempt == 3
    with unit_of_work() as s:
        assert jobs.fail(s, held, "store down", retryable=True) == JobState.failed
    req = request_row(request_id)
    assert req.status == RequestStatus.failed
    assert req.error == "store down (gave up after 3 of 3 attempts)"


def test_non_retryable_failure_fails_at_once(queued: tuple[uuid.UUID, uuid.UUID]) -> None:
    request_id, job_id = queued
    held = _lease(job_id, "w")
    assert held is not None
    with unit_of_work() as s:
        assert jobs.fail(s, held, "the surrogate equals the target", retryable=False) == JobState.failed
    assert request_row(request_id).error == "the surrogate equals the target"
    with unit_of_work() as s:
        topics = [m.payload.get("type") for m in s.query(OutboxMessage).filter_by(topic="webhook.event")]
    assert topics == ["erasure.failed"]


def test_cancel_flag_reaches_the_heartbeat_and_cancels(queued: tuple[uuid.UUID, uuid.UUID]) -> None:
    request_id, job_id = queued
    held = _lease(job_id, "w")
    assert held is not None
    with unit_of_work() as s:
        jobs.request_cancel(s, s.get(jobs.Job, job_id))
    with unit_of_work() as s:
        assert jobs.heartbeat(s, held, 60).cancel_requested
    with unit_of_work() as s:
        assert jobs.complete(s, held, artifacts=[], result={}) == JobState.cancelled
    assert job_row(job_id).state == JobState.cancelled
    assert request_row(request_id).status == RequestStatus.cancelled
    assert artifacts(job_id) == []


def test_execute_runs_a_real_erasure_end_to_end(
    any_db_url: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Path  # noqa: F811
) -> None:
    use_database(monkeypatch, any_db_url, verify_min_gap_closure="0.0", job_progress_interval_seconds="0.2")
    tenant = seed_tenant()
    model = seed_model(tenant, tiny_model, fingerprint="fp-tiny")
    request_id, job_id = seed_request(tenant, model)
    assert execute(job_id, worker_id="inproc") == "succeeded"
    assert execute(job_id, worker_id="inproc") == "skipped", "a finished job is never run again"
    req = request_row(request_id)
    assert req.status == RequestStatus.succeeded
    assert "forget_gap_closure" in req.metrics["probe"]
    assert req.metrics["verification"]["forget_gap_closure"]["passed"] is True
    rows = artifacts(job_id)
    names = {a.name for a in rows}
    assert {"adapter/pytorch_lora_weights.safetensors", "report.json", "grid.png"} <= names
    assert any(n.startswith("fused/") for n in names)
    store = get_store()
    for row in rows:
        assert row.key.endswith(f"/jobs/{job_id}/attempt-1/{row.name}")
        assert len(store.get(row.key, expected_sha256=row.sha256)) == row.size


def test_failed_verification_fails_with_a_readable_reason(
    any_db_url: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Path  # noqa: F811
) -> None:
    use_database(monkeypatch, any_db_url, verify_min_gap_closure="0.999")
    tenant = seed_tenant()
    model = seed_model(tenant, tiny_model, fingerprint="fp-tiny")
    request_id, job_id = seed_request(tenant, model)
    assert execute(job_id, worker_id="inproc") == "failed"
    req = request_row(request_id)
    assert req.status == RequestStatus.failed
    assert req.error.startswith("verification failed: forget_gap_closure")
    assert "below the required 0.999" in req.error
    assert artifacts(job_id) == []
    assert get_store().list("tenants/") == [], "nothing uploaded for an unverified erasure"
    assert req.certificate is None


def test_bad_parameters_fail_without_retry(
    any_db_url: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Path  # noqa: F811
) -> None:
    use_database(monkeypatch, any_db_url)
    tenant = seed_tenant()
    model = seed_model(tenant, tiny_model)
    request_id, job_id = seed_request(tenant, model, params={"steps": 0})
    assert execute(job_id, worker_id="inproc") == "failed"
    assert job_row(job_id).attempt == 1
    assert request_row(request_id).error.startswith("invalid erasure parameters: steps")


def test_cancel_during_upload_removes_the_partial_artifacts(
    any_db_url: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Path  # noqa: F811
) -> None:
    import time

    use_database(monkeypatch, any_db_url, verify_min_gap_closure="0", job_progress_interval_seconds="0.2")
    tenant = seed_tenant()
    model = seed_model(tenant, tiny_model, fingerprint="fp-tiny")
    request_id, job_id = seed_request(tenant, model)
    store = get_store()
    real_put = store.put
    stored: list[str] = []

    def put_then_cancel(key: str, source, **kw):  # type: ignore[no-untyped-def]
        obj = real_put(key, source, **kw)
        stored.append(key)
        if len(stored) == 2:  # the cancel arrives while artifacts are being uploaded
            with unit_of_work() as s:
                jobs.request_cancel(s, s.get(jobs.Job, job_id))
            time.sleep(1.0)  # a heartbeat (every 0.2 s) carries the flag to the worker
        return obj

    monkeypatch.setattr(store, "put", put_then_cancel)
    assert execute(job_id, worker_id="inproc") == "cancelled"
    assert len(stored) == 2, "stopped at the next step"
    assert store.list("tenants/") == [], "the partial uploads were removed"
    assert artifacts(job_id) == []
    assert job_row(job_id).state == JobState.cancelled
    assert request_row(request_id).status == RequestStatus.cancelled


def test_verifying_is_its_own_committed_step(
    any_db_url: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Path  # noqa: F811
) -> None:
    """Clients see `verifying` while the full held-out evaluation runs: the move is committed before it."""
    from core.erasure.execution import default_erase

    use_database(monkeypatch, any_db_url, verify_min_gap_closure="0.0")
    tenant = seed_tenant()
    model = seed_model(tenant, tiny_model, fingerprint="fp-tiny")
    request_id, job_id = seed_request(tenant, model)
    seen: list[RequestStatus] = []
    real = default_erase()

    def engine(pipeline, spec, config, *, evaluator, **kw):  # type: ignore[no-untyped-def]
        def evaluate(erased, base):  # type: ignore[no-untyped-def]
            seen.append(request_row(request_id).status)  # before: the round check, training is over
            out = evaluator(erased, base)
            seen.append(request_row(request_id).status)  # another session reads the committed state
            return out

        return real(pipeline, spec, config, evaluator=evaluate, **kw)

    assert execute(job_id, worker_id="inproc", erase_fn=engine) == "succeeded"
    assert seen[0] == RequestStatus.running and seen[-1] == RequestStatus.verifying
    assert request_row(request_id).status == RequestStatus.succeeded


def test_the_lease_keeper_stops_an_attempt_past_its_time_limit_and_releases_it(
    any_db_url: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Path  # noqa: F811
) -> None:
    import time

    use_database(monkeypatch, any_db_url, job_time_limit_seconds="5", job_progress_interval_seconds="0.2",
                 job_retry_backoff_seconds="30")
    tenant = seed_tenant()
    model = seed_model(tenant, tiny_model, fingerprint="fp-tiny")
    request_id, job_id = seed_request(tenant, model, params={**FAST_PARAMS, "steps": 3000})  # minutes: the slow job
    started = time.monotonic()
    assert execute(job_id, worker_id="inproc") == "queued", "a retryable failure: back to the queue"
    took = time.monotonic() - started
    assert 5 <= took < 20, f"stopped within a step of the limit, not at the end ({took:.1f} s)"
    job = job_row(job_id)
    assert job.state == JobState.queued and job.attempt == 1
    assert job.lease_owner is None and job.lease_expires_at is None, "the lease is released"
    assert "time limit of 5 s" in (job.error or "")
    assert job.not_before is not None, "retried after the backoff like any failed attempt"
    assert request_row(request_id).status == RequestStatus.queued
    assert artifacts(job_id) == []
    outcomes = [p.get("outcome") for a, p in audit_actions(f"job:{job_id}") if a == "job.attempt_finished"]
    assert outcomes == ["retry"]


class _Recorder:
    def __init__(self, depth: int | None = None, fail: bool = False) -> None:
        self.jobs: list[uuid.UUID] = []
        self.depth = depth
        self.fail = fail

    def enqueue_job(self, job_id: uuid.UUID, kind: str) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.jobs.append(job_id)

    def deliver_webhook(self, delivery_id: uuid.UUID) -> None:
        pass

    def queue_depth(self) -> int | None:
        return self.depth


def test_sweeper_relays_rerings_and_flags_overdue(any_db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    from core.jobs.services import sweep

    use_database(monkeypatch, any_db_url, requeue_after_seconds="60")
    tenant = seed_tenant()
    model = seed_model(tenant, tmp_path)
    _, j1 = seed_request(tenant, model)
    overdue_req, j2 = seed_request(tenant, model, due_at=utcnow() - timedelta(hours=1))

    # Broker down: nothing is marked published; the rows wait for the next sweep.
    down = _Recorder(fail=True)
    first = sweep(down)
    assert first.published == 0
    assert first.overdue == 1 and request_row(overdue_req).overdue, "overdue flags do not need the broker"
    with unit_of_work() as s:
        rows = s.query(OutboxMessage).filter_by(topic="job.enqueue").all()
        assert all(r.published_at is None for r in rows)
        # The relay stops at the first connection error instead of failing every row against a dead broker.
        assert [r.attempts for r in sorted(rows, key=lambda r: r.id)] == [1, 0]
        assert "broker down" in sorted(rows, key=lambda r: r.id)[0].last_error

    up = _Recorder(depth=2)
    report = sweep(up)
    assert report.published == 3 and sorted(up.jobs) == sorted([j1, j2])  # 2 doorbells + the overdue event
    assert [a for a, _ in audit_actions(f"erasure:{overdue_req}")] == ["erasure.overdue"]
    assert sweep(_Recorder(depth=2)).rerung == 0, "fresh doorbells are not rung again"
    assert sweep(_Recorder(depth=2)).overdue == 0, "flagged once"

    # An hour later the doorbells are old: rung again only as far as the broker lacks messages.
    with unit_of_work() as s:
        for job in s.query(jobs.Job).all():
            job.enqueued_at = utcnow() - timedelta(hours=1)
    assert sweep(_Recorder(depth=2)).rerung == 0, "both messages still wait in the broker"
    lost_one = _Recorder(depth=1)
    assert sweep(lost_one).rerung == 1
    lost_all = _Recorder(depth=0)
    assert sweep(lost_all).rerung == 1, "the other one was rung a moment ago"
