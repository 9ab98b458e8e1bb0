"""Chained requests: erasures of one model applied in order, each trained on the version the one before made.

A batch that asks for one version per erasure (`BatchCreate.combined = false`) files, per model, one request
per concept. The first runs on the model's head; each later one names the request before it
(`after_request_id`) and waits — status `waiting` (or `awaiting_approval` first), no job, `model_version`
NULL — until the version its predecessor made is stored. Every request of a chain has `apply_on_success`:
it becomes the model's next version when it succeeds (core.versions.service.auto_apply), so the chain
yields one version per concept, in order.

- `release` (the versions domain calls it when a version is stored): each request chained after that
  version's erasure now runs on it (`model_version`); a `waiting` one is queued with its job, one still
  `awaiting_approval` is queued by its approval.
- `cancel_successors`: the predecessor failed, was cancelled or rejected, or was not made a version: every
  request still waiting in the chain after it is cancelled, with an error that names the predecessor.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core.audit import service as audit
from core.erasure import repository
from core.erasure.models import ErasureRequest
from core.erasure.states import RequestStatus, transition
from core.jobs.lifecycle import create_job
from core.jobs.states import JobKind
from core.outbox.service import webhook_event

# A successor in one of these has no job yet: it waits for its predecessor's version.
WAITING: frozenset[RequestStatus] = frozenset(
    {RequestStatus.submitted, RequestStatus.awaiting_approval, RequestStatus.waiting}
)


def waits_for_predecessor(request: ErasureRequest) -> bool:
    """A chained request whose predecessor's version is not stored yet (it has no version to run on)."""
    return request.after_request_id is not None and request.model_version is None


def release(session: Session, predecessor_id: uuid.UUID, version: int, *, actor: str) -> list[ErasureRequest]:
    """The version `predecessor_id` made is stored: the requests chained after it run on it."""
    released = []
    for successor in repository.successors(session, predecessor_id):
        if successor.status not in WAITING or successor.model_version is not None:
            continue  # cancelled meanwhile
        successor.model_version = version
        job_id = None
        if successor.status == RequestStatus.waiting:
            transition(successor, RequestStatus.queued)
            job_id = create_job(session, tenant_id=successor.tenant_id, kind=JobKind.erase,
                                model_id=successor.model_id, request_id=successor.id,
                                priority=successor.priority).id
        audit.append(session, action="erasure.released", subject=f"erasure:{successor.id}", actor=actor,
                     tenant_id=successor.tenant_id,
                     payload={"after_request_id": str(predecessor_id), "model_version": version,
                              "status": successor.status.value, "job_id": str(job_id) if job_id else None})
        released.append(successor)
    return released


def cancel_successors(session: Session, predecessor_id: uuid.UUID, what: str, *, actor: str) -> list[uuid.UUID]:
    """Cancel every request waiting in the chain after `predecessor_id`; `what` says what became of it
    ("failed: ...", "was cancelled", ...). Returns the ids cancelled, nearest first."""
    cancelled: list[uuid.UUID] = []
    frontier = [(predecessor_id, f"erasure request {predecessor_id}, which it runs after, {what}")]
    while frontier:
        before, reason = frontier.pop(0)
        for successor in repository.successors(session, before):
            if successor.status not in WAITING:
                continue
            successor.error = f"cancelled: {reason}"[:4000]
            transition(successor, RequestStatus.cancelled)
            audit.append(session, action="erasure.cancelled", subject=f"erasure:{successor.id}", actor=actor,
                         tenant_id=successor.tenant_id,
                         payload={"after_request_id": str(before), "reason": successor.error})
            webhook_event(session, "erasure.cancelled", successor.tenant_id,
                          {"request_id": str(successor.id), "job_id": None, "status": "cancelled",
                           "error": successor.error})
            cancelled.append(successor.id)
            frontier.append((successor.id, f"erasure request {successor.id}, which it runs after, was cancelled "
                                           f"because {reason}"))
    return cancelled
