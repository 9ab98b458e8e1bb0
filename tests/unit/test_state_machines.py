"""The two transition tables (jobs, erasure requests): every move they list works, every other one raises."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime

import pytest

from core.erasure.models import ErasureRequest
from core.erasure.states import TERMINAL as REQUEST_TERMINAL
from core.erasure.states import TRANSITIONS as REQUEST_TRANSITIONS
from core.erasure.states import RequestStatus
from core.erasure.states import transition as move_request
from core.errors import InvalidTransition
from core.jobs import handlers
from core.jobs.models import Job
from core.jobs.states import LANES, TERMINAL, TRANSITIONS, JobKind, JobState, Lane, kinds_of, transition


def _job(state: JobState) -> Job:
    return Job(id=uuid.uuid4(), state=state, lease_owner="w", lease_expires_at=datetime(2030, 1, 1))


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobState, JobState)))
def test_job_moves_follow_the_table(current: JobState, target: JobState) -> None:
    job = _job(current)
    if target in TRANSITIONS[current]:
        transition(job, target)
        assert job.state == target
        assert (job.finished_at is not None) == (target in TERMINAL)
        if target != JobState.running:
            assert job.lease_owner is None and job.lease_expires_at is None
    else:
        with pytest.raises(InvalidTransition):
            transition(job, target)
        assert job.state == current, "a refused move changes nothing"


def test_terminal_job_states_are_final_and_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert all(not TRANSITIONS[s] for s in TERMINAL)
    with pytest.raises(InvalidTransition, match="from 'succeeded' to 'running'"):
        transition(_job(JobState.succeeded), JobState.running)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(RequestStatus, RequestStatus)))
def test_request_moves_follow_the_table(current: RequestStatus, target: RequestStatus) -> None:
    request = ErasureRequest(status=current)
    if target in REQUEST_TRANSITIONS[current]:
        assert move_request(request, target) is True
        assert request.status == target and (request.finished_at is not None) == (target in REQUEST_TERMINAL)
    else:
        with pytest.raises(InvalidTransition):
            move_request(request, target)
        assert request.status == current


def test_the_worker_side_form_leaves_decided_requests_alone() -> None:
    cancelled = ErasureRequest(status=RequestStatus.cancelled)
    assert move_request(cancelled, RequestStatus.running, if_open=True) is False
    assert cancelled.status == RequestStatus.cancelled
    verifying = ErasureRequest(status=RequestStatus.verifying)
    assert move_request(verifying, RequestStatus.verifying, if_open=True) is False
    with pytest.raises(InvalidTransition):  # open but not a legal move: still refused
        move_request(ErasureRequest(status=RequestStatus.queued), RequestStatus.succeeded, if_open=True)


def test_verifying_sits_between_running_and_the_verdict() -> None:
    assert RequestStatus.verifying in REQUEST_TRANSITIONS[RequestStatus.running]
    assert {RequestStatus.succeeded, RequestStatus.failed} <= REQUEST_TRANSITIONS[RequestStatus.verifying]
    assert RequestStatus.succeeded not in REQUEST_TRANSITIONS[RequestStatus.queued]


def test_every_kind_has_a_lane_and_a_registered_handler() -> None:
    assert set(LANES) == set(JobKind)
    assert LANES[JobKind.erase] == Lane.gpu
    assert LANES[JobKind.validate_model] == Lane.default, "light jobs must not wait behind erasures"
    assert kinds_of(["default"]) == [JobKind.validate_model, JobKind.apply_version]
    registered = handlers.registered()
    assert set(registered) == set(JobKind)  # tests/conftest.py loads core.wiring, as every worker does
    with pytest.raises(ValueError, match="already has a handler"):
        handlers.register(type("Other", (handlers.JobHandler,), {"kind": JobKind.erase})())
