"""Erasure requests: submit, list, read, cancel, approve, reject. Every transition goes through states.py.

Never commits: the HTTP request (or CLI/worker task) that calls these commits once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.audit import service as audit
from core.config import Settings, get_settings
from core.erasure import chain, repository
from core.erasure.models import ErasureRequest
from core.erasure.schemas import (
    DEFAULT_SURROGATES,
    ArtifactLink,
    ArtifactLinks,
    ArtifactOut,
    ErasureCreate,
    ErasureOut,
)
from core.erasure.states import RequestStatus, check_transition, transition
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed, found
from core.ids import new_id
from core.jobs.lifecycle import create_job, new_job_values, request_cancel
from core.jobs.models import Artifact, Job
from core.jobs.states import JobKind, JobState
from core.pagination import keyset_cursor, parse_keyset
from core.registry import repository as registry_repo
from core.registry.models import ModelStatus
from core.tenancy.schemas import Principal
from core.timeutil import utcnow
from core.uploads import repository as uploads_repo


class ModelNotReady(Conflict):
    kind = "model-not-ready"
    title = "The model is not ready"


class FourEyes(Forbidden):
    kind = "four-eyes"
    title = "Approver must differ from submitter"


def _verification(body: ErasureCreate) -> dict[str, Any] | None:
    """The request's verification asks, checked against the service minimums (raise only, never lower)."""
    if body.verification is None:
        return None
    asked = body.verification.given()
    settings = get_settings()
    floors = {"min_unlearning_accuracy": settings.verify_min_unlearning_accuracy,
              "min_retention": settings.verify_min_retention}
    below = {k: v for k, v in asked.items() if k in floors and v < floors[k]}
    if below:
        detail = ", ".join(f"verification.{k} {v} is below the service minimum {floors[k]}" for k, v in below.items())
        raise ValidationFailed(f"a request may raise verification thresholds, not lower them: {detail}")
    return asked or None


@dataclass(frozen=True)
class Submitted:
    """What a submission wrote: the request's and its job's column values (inserted with Core)."""

    request: dict[str, Any]
    job: dict[str, Any] | None


def submit(
    session: Session, principal: Principal, body: ErasureCreate, *, batch_id: uuid.UUID | None = None,
    schedule_id: uuid.UUID | None = None, rebased_from: uuid.UUID | None = None,
    after_request_id: uuid.UUID | None = None, apply_on_success: bool = False,
) -> Submitted:
    """Validate, then write the request, its job (+ outbox doorbell) and the audit event in one transaction.

    The hot path of the API: Core statements only — one SELECT for the model, one INSERT for
    request + job + doorbell (Postgres); the audit event is appended right before COMMIT, so the chain's
    writer lock is taken last and held for one call and the commit.

    `after_request_id`: a chained request (core.erasure.chain), written `waiting` without a job and without
    a version until its predecessor's version is stored. `apply_on_success`: applied when it succeeds."""
    model = found(registry_repo.status_of(session, principal.tenant_id, body.model_id), f"model {body.model_id}")
    if model.status != ModelStatus.ready:
        status = ModelStatus(model.status)
        raise ModelNotReady(
            f"model {model.id} is {status.value}"
            + (f" ({model.status_reason})" if model.status_reason else "")
            + "; erasures run on ready models only",
            model_status=status.value,
        )
    # A version other than the head is checked by the caller (core.versions.service.check_erasable).
    model_version = body.model_version if body.model_version is not None else model.head_version
    if after_request_id is not None:
        model_version = None  # the version its predecessor makes (core.erasure.chain.release)
    image_ids = [i for c in body.concepts for i in c.example_images]
    if image_ids:
        known = uploads_repo.get_many(session, principal.tenant_id, image_ids)
        missing = [str(i) for i in dict.fromkeys(image_ids) if i not in known]
        if missing:
            raise ValidationFailed(f"unknown example image ids: {', '.join(missing)}", missing=missing)
    concepts = [
        {
            "target": c.target,
            "surrogate": c.surrogate.strip() if c.surrogate is not None else DEFAULT_SURROGATES[c.kind],
            "kind": c.kind,
            "prompts": [p.strip() for p in c.prompts],
            "example_images": [str(i) for i in c.example_images],
        }
        for c in body.concepts
    ]
    legal = body.legal.model_dump(mode="json") if body.legal else None
    # The first move is decided before the row is written (one INSERT, no UPDATE): still checked by the table.
    if principal.require_approval:
        target = RequestStatus.awaiting_approval
    else:
        target = RequestStatus.waiting if after_request_id is not None else RequestStatus.queued
    check_transition(RequestStatus.submitted, target)
    now = utcnow()
    # The columns a new request sets; the others (approved_by, metrics, certificate...) start NULL/default.
    request: dict[str, Any] = {
        "id": new_id(), "tenant_id": principal.tenant_id, "model_id": model.id, "status": target,
        "method": body.method, "concepts": concepts, "retain": [r.strip() for r in body.retain],
        "params": body.params.given(), "verification": _verification(body), "legal": legal, "priority": body.priority,
        "labels": list(dict.fromkeys(body.labels)), "batch_id": batch_id, "schedule_id": schedule_id,
        "submitted_by": principal.actor, "due_at": body.legal.due_at if body.legal else None,
        "model_version": model_version, "created_at": now, "updated_at": now,
    }
    if rebased_from is not None:
        request["rebased_from"] = rebased_from
    if after_request_id is not None:
        request["after_request_id"] = after_request_id
    if apply_on_success:
        request["apply_on_success"] = True
    job = doorbell = None
    if target == RequestStatus.queued:
        job, doorbell = new_job_values(tenant_id=principal.tenant_id, kind=JobKind.erase, model_id=model.id,
                                       request_id=request["id"], priority=body.priority, now=now)
    repository.insert_submission(session, request, job, doorbell)
    audit.append_at_commit(
        session, action="erasure.submitted", subject=f"erasure:{request['id']}", actor=principal.actor,
        tenant_id=principal.tenant_id,
        payload={
            "model_id": str(model.id),
            "model_fingerprint": model.fingerprint,
            "model_version": model_version,
            **({"after_request_id": str(after_request_id)} if after_request_id is not None else {}),
            "method": body.method,
            "targets": [c["target"] for c in concepts],
            "regime": legal["regime"] if legal else None,
            "external_reference": legal.get("external_reference") if legal else None,
            "status": target.value,
        },
    )
    return Submitted(request, job)


def submitted_out(submitted: Submitted) -> ErasureOut:
    """The response for a fresh submission (what `to_out` gives once the rows are read back)."""
    r, job = submitted.request, submitted.job
    return ErasureOut(
        id=r["id"], model_id=r["model_id"], status=r["status"], method=r["method"], concepts=r["concepts"],
        retain=r["retain"], params=r["params"], verification=r["verification"], legal=r["legal"],
        priority=r["priority"], labels=r["labels"],
        batch_id=r["batch_id"], schedule_id=r["schedule_id"], submitted_by=r["submitted_by"], approved_by=None,
        decision_reason=None, metrics=None, error=None, due_at=r["due_at"], overdue=False, artifacts=[],
        certificate_available=False, model_version=r["model_version"], rebased_from=r.get("rebased_from"),
        after_request_id=r.get("after_request_id"), apply_on_success=r.get("apply_on_success", False),
        created_at=r["created_at"], updated_at=r["updated_at"], finished_at=None,
        stage=None, progress=0.0, attempts=0,
        cancel_requested=False if job is not None else r["status"] == RequestStatus.cancelled,
    )


def get(session: Session, principal: Principal, request_id: uuid.UUID, *, lock: bool = False) -> ErasureRequest:
    return found(repository.get_request(session, principal.tenant_id, request_id, lock=lock),
                 f"erasure request {request_id}")


def list_page(
    session: Session,
    principal: Principal,
    *,
    limit: int,
    cursor: str | None,
    status: RequestStatus | None = None,
    model_id: uuid.UUID | None = None,
    label: str | None = None,
    due_before: datetime | None = None,
    external_reference: str | None = None,
) -> tuple[list[ErasureRequest], str | None]:
    rows = repository.list_requests(
        session, principal.tenant_id, limit=limit + 1, status=status, model_id=model_id, label=label,
        due_before=due_before, external_reference=external_reference or None, after=parse_keyset(cursor),
    )
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, keyset_cursor(rows[-1].created_at, rows[-1].id)


def _submitters(session: Session, request: ErasureRequest) -> set[str]:
    """Who submitted a request: its `submitted_by`, and for a scheduled request also the schedule's creator
    (scheduled runs submit as the creating key; this also covers rows written as `schedule:<id>`)."""
    out = {request.submitted_by}
    if request.schedule_id is not None:
        creator = repository.schedule_creator(session, request.schedule_id)
        if creator is not None:
            out.add(creator)
    return out


def approve(session: Session, principal: Principal, request_id: uuid.UUID) -> ErasureRequest:
    """Four eyes: awaiting_approval → queued, by a key other than the submitter's (for a scheduled request,
    other than the schedule creator's); queues the job. A chained request whose predecessor's version is not
    stored yet moves to `waiting` instead (core.erasure.chain queues it then)."""
    request = get(session, principal, request_id, lock=True)
    check_transition(request.status, RequestStatus.queued)
    if request.status != RequestStatus.awaiting_approval:
        raise Conflict(f"erasure request {request.id} is not awaiting approval", request_status=request.status.value)
    if principal.actor in _submitters(session, request):
        raise FourEyes("the submitter of a request cannot approve it; another key with erasures:approve must")
    request.approved_by = principal.actor
    if chain.waits_for_predecessor(request):
        transition(request, RequestStatus.waiting)
    else:
        transition(request, RequestStatus.queued)
        create_job(session, tenant_id=request.tenant_id, kind=JobKind.erase, model_id=request.model_id,
                   request_id=request.id, priority=request.priority)
    audit.append(session, action="erasure.approved", subject=f"erasure:{request.id}", actor=principal.actor,
                 tenant_id=request.tenant_id, payload={"submitted_by": request.submitted_by})
    return request


def reject(session: Session, principal: Principal, request_id: uuid.UUID, reason: str) -> ErasureRequest:
    request = get(session, principal, request_id, lock=True)
    transition(request, RequestStatus.rejected)
    request.decision_reason = reason
    request.approved_by = principal.actor
    audit.append(session, action="erasure.rejected", subject=f"erasure:{request.id}", actor=principal.actor,
                 tenant_id=request.tenant_id, payload={"reason": reason})
    chain.cancel_successors(session, request.id, f"was rejected: {reason}", actor=principal.actor)
    return request


def cancel(session: Session, principal: Principal, request_id: uuid.UUID) -> ErasureRequest:
    """Before a worker holds it: cancelled at once. While running: the worker stops at its next step and
    moves the request to `cancelled` itself (core.jobs.lifecycle.cancel → the erase handler). Either way the
    requests chained after it are cancelled too (core.erasure.chain)."""
    get(session, principal, request_id)  # tenant check before any lock
    # Lock order as in the workers (core.jobs.lifecycle: job, then request), so the two never deadlock.
    jobs = repository.jobs_of_request(session, request_id, lock=True)
    request = get(session, principal, request_id, lock=True)
    check_transition(request.status, RequestStatus.cancelled)
    for job in jobs:
        if job.state in (JobState.queued, JobState.running):
            request_cancel(session, job)
    running = any(job.state == JobState.running for job in jobs)
    if not running:
        transition(request, RequestStatus.cancelled)
    audit.append(session, action="erasure.cancelled" if not running else "erasure.cancel_requested",
                 subject=f"erasure:{request.id}", actor=principal.actor, tenant_id=request.tenant_id,
                 payload={"status": request.status.value})
    if not running:
        chain.cancel_successors(session, request.id, "was cancelled", actor=principal.actor)
    return request


class ArtifactsUnavailable(Conflict):
    kind = "artifacts-unavailable"
    title = "No artifacts to link"


def _succeeded_artifacts(session: Session, request: ErasureRequest, job: Job | None) -> list[Artifact]:
    if job is None or job.state != JobState.succeeded or request.status != RequestStatus.succeeded:
        return []
    return repository.artifacts_of_attempt(session, job.id, job.attempt)


def artifacts(session: Session, request: ErasureRequest, job: Job | None) -> list[ArtifactOut]:
    """What the succeeded attempt produced (name, size, sha256): read-only, no links, no audit event."""
    return [ArtifactOut(name=r.name, size=r.size, sha256=r.sha256) for r in _succeeded_artifacts(session, request, job)]


def issue_artifact_links(
    session: Session, settings: Settings, principal: Principal, request: ErasureRequest, job: Job | None
) -> ArtifactLinks:
    """Expiring download links for the succeeded attempt's artifacts; issuing them is an audited event."""
    rows = _succeeded_artifacts(session, request, job)
    if not rows or job is None:
        raise ArtifactsUnavailable(
            f"erasure request {request.id} is {request.status.value}: only a succeeded request has artifacts"
        )
    from core.storage import get_store
    from core.storage.tenant import tenant_store

    store = tenant_store(get_store(settings), request.tenant_id)
    ttl = settings.artifact_url_ttl_s
    links = [ArtifactLink(name=r.name, size=r.size, sha256=r.sha256, url=store.presign_get(store.relative(r.key), ttl))
             for r in rows]
    audit.append(session, action="artifact.link_issued", subject=f"erasure:{request.id}", actor=principal.actor,
                 tenant_id=request.tenant_id, payload={"job_id": str(job.id), "attempt": job.attempt,
                                                       "names": [r.name for r in rows], "ttl_s": ttl})
    return ArtifactLinks(request_id=request.id, attempt=job.attempt, expires_in_s=ttl, artifacts=links)


def succeeded_artifact(session: Session, principal: Principal, request_id: uuid.UUID, name: str) -> Artifact:
    """One artifact of a request's succeeded attempt (what `artifacts` lists), by name."""
    request = get(session, principal, request_id)
    job = repository.latest_jobs(session, [request.id]).get(request.id)
    if job is not None and job.state == JobState.succeeded and request.status == RequestStatus.succeeded:
        for row in repository.artifacts_of_attempt(session, job.id, job.attempt):
            if row.name == name:
                return row
    raise NotFound(f"erasure request {request_id} has no artifact {name!r}")


def to_out(request: ErasureRequest, job: Job | None, artifacts: list[ArtifactOut] | None = None) -> ErasureOut:
    data: dict[str, Any] = {
        "stage": job.stage if job else None,
        "progress": float(job.progress) if job else 0.0,
        "attempts": job.attempt if job else 0,
        "cancel_requested": bool(job.cancel_requested) if job else request.status == RequestStatus.cancelled,
    }
    if request.status == RequestStatus.succeeded:
        data["progress"] = 1.0
    return ErasureOut(
        id=request.id, model_id=request.model_id, status=request.status, method=request.method,  # type: ignore[arg-type]
        concepts=request.concepts, retain=request.retain or [], params=request.params or {},
        verification=request.verification, legal=request.legal,
        priority=request.priority, labels=request.labels or [], batch_id=request.batch_id,
        schedule_id=request.schedule_id, submitted_by=request.submitted_by, approved_by=request.approved_by,
        decision_reason=request.decision_reason, metrics=request.metrics, error=request.error,
        due_at=request.due_at, overdue=request.overdue, artifacts=artifacts or [],
        certificate_available=request.certificate is not None, model_version=request.model_version,
        rebased_from=request.rebased_from, after_request_id=request.after_request_id,
        apply_on_success=request.apply_on_success, created_at=request.created_at,
        updated_at=request.updated_at, finished_at=request.finished_at, **data,
    )
