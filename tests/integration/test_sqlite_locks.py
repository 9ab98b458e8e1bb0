"""Read-modify-write on SQLite (the embedded service: API requests and the in-process worker share one database
file) holds the database's write lock from its read on, as FOR UPDATE does on Postgres:

- two writers append to the audit chain at once: the second waits for the first's commit and links after it,
  instead of reading the same last link and failing on a duplicate seq (a 500 on a GET that records a download
  link);
- a model row locked for a change of its head or versions: a second locker waits for the first's commit;
- an erasure request and its job, locked by the worker finishing an attempt: a cancel waits for that commit and
  sees the outcome, instead of reading the request as still running and flagging a finished job."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Row

from core.audit import repository
from core.audit import service as audit
from core.db import make_engine, unit_of_work
from core.erasure import repository as erasure
from core.erasure.models import ErasureRequest
from core.erasure.states import RequestStatus
from core.jobs import repository as jobs
from core.jobs.models import Job
from core.jobs.states import JobKind, JobState
from core.migrate import upgrade
from core.registry import repository as registry
from core.registry.models import RegisteredModel
from core.tenancy.models import Tenant


def test_a_writer_that_read_the_last_link_is_not_overtaken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    engine = make_engine(url)
    with unit_of_work(engine) as s:
        audit.append(s, action="test.first", subject="t:1", actor="test")

    other_done = threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            with unit_of_work(engine) as s:
                audit.append(s, action="test.other", subject="t:2", actor="test")
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            other_done.set()

    read = repository.last_link
    started: list[threading.Thread] = []

    def last_link_then_race(session: Any) -> Row | None:  # type: ignore[type-arg]
        link = read(session)
        if not started:  # the first writer, between reading the last link and inserting: another one arrives
            started.append(threading.Thread(target=other_writer))
            started[0].start()
            other_done.wait(2.0)  # long enough for it to commit, unless it waits for our lock
        return link

    monkeypatch.setattr(repository, "last_link", last_link_then_race)
    with unit_of_work(engine) as s:
        appended = audit.append(s, action="test.mine", subject="t:3", actor="test")
    started[0].join(30)
    assert errors == [], errors
    assert appended.seq == 2, "the first writer to read the last link appends right after it"
    with unit_of_work(engine) as s:
        report = audit.verify(s, full=True, sign_head=False)
        actions = [e.action for e in repository.iter_chain(s)]
    assert report.ok, report
    assert actions == ["test.first", "test.mine", "test.other"]


def _tenant_and_model(tmp_path: Path) -> tuple[Engine, uuid.UUID, uuid.UUID]:
    """A migrated SQLite database file holding one tenant and one registered model."""
    url = f"sqlite:///{tmp_path / 'lethe.db'}"
    upgrade(url)
    engine = make_engine(url)
    with unit_of_work(engine) as s:
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        model = RegisteredModel(tenant_id=tenant.id, name="m", source_uri="file:///m")
        s.add(model)
        s.flush()
        return engine, tenant.id, model.id


def test_a_locked_model_row_waits_for_the_first_lockers_commit(tmp_path: Path) -> None:
    engine, tenant_id, model_id = _tenant_and_model(tmp_path)

    order: list[str] = []

    def second_locker() -> None:
        with unit_of_work(engine) as s:
            row = registry.lock(s, tenant_id, model_id)
            assert row is not None
            order.append(f"second saw head {row.head_version}")
            row.head_version += 1

    with unit_of_work(engine) as s:
        row = registry.lock(s, tenant_id, model_id)
        assert row is not None
        other = threading.Thread(target=second_locker)
        other.start()
        other.join(1.0)  # it waits for this transaction: still running after a second
        assert other.is_alive() and order == []
        row.head_version = 2
        order.append("first set head 2")
    other.join(30)
    assert order == ["first set head 2", "second saw head 2"]
    with unit_of_work(engine) as s:
        assert registry.lock(s, tenant_id, model_id).head_version == 3  # type: ignore[union-attr]


def test_a_cancel_waits_for_the_worker_that_locked_the_request(tmp_path: Path) -> None:
    engine, tenant_id, model_id = _tenant_and_model(tmp_path)
    with unit_of_work(engine) as s:
        request = ErasureRequest(tenant_id=tenant_id, model_id=model_id, status=RequestStatus.running,
                                 concepts=[{"name": "circle"}], submitted_by="test")
        s.add(request)
        s.flush()
        job = Job(tenant_id=tenant_id, model_id=model_id, request_id=request.id, kind=JobKind.erase,
                  state=JobState.running, attempt=1)
        s.add(job)
        s.flush()
        request_id, job_id = request.id, job.id

    seen: list[str] = []

    def cancel() -> None:  # what the API's cancel reads before it decides
        with unit_of_work(engine) as s:
            row = erasure.get_request(s, tenant_id, request_id, lock=True)
            held = erasure.jobs_of_request(s, request_id, lock=True)
            assert row is not None
            seen.append(f"cancel saw {row.status.value}, job {held[0].state.value}")

    with unit_of_work(engine) as s:  # the worker completing the attempt
        row = erasure.lock_request(s, request_id)
        held = jobs.lock_job(s, job_id)
        assert row is not None and held is not None
        other = threading.Thread(target=cancel)
        other.start()
        other.join(1.0)
        assert other.is_alive() and seen == [], "the cancel waits for the worker's transaction"
        held.state = JobState.succeeded
        row.status = RequestStatus.succeeded
    other.join(30)
    assert seen == ["cancel saw succeeded, job succeeded"]
