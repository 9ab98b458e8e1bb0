"""Erasure requests: submit, list, read, cancel, approve, reject."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import (
    AuthFirstRoute,
    Credentials,
    SessionDep,
    SettingsDep,
    authenticated_in,
    in_transaction,
    require,
)
from api.errors import COMMON_ERRORS, problems
from api.idempotency import IdempotencyKey, idempotent
from api.openapi import LOCATION
from core.erasure import repository, service
from core.erasure.schemas import ArtifactLinks, DecisionIn, ErasureCreate, ErasureOut
from core.erasure.states import RequestStatus
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from core.tenancy.schemas import Principal, Scope
from core.timeutil import UtcTimestamp
from core.validation import SafeText
from core.versions import service as versions

router = APIRouter(
    prefix="/v1/erasures", tags=["erasures"], responses=problems(*COMMON_ERRORS), route_class=AuthFirstRoute
)

Reader = Annotated[Principal, Depends(require(Scope.erasures_read))]
Writer = Annotated[Principal, Depends(require(Scope.erasures_write))]
Approver = Annotated[Principal, Depends(require(Scope.erasures_approve))]


def _absolute(request: Request, links: ArtifactLinks) -> ArtifactLinks:
    # file:// stores sign links to this API (/v1/objects/...): make them absolute for the client.
    base = str(request.base_url).rstrip("/")
    return links.model_copy(update={"artifacts": [
        a.model_copy(update={"url": base + a.url}) if a.url.startswith("/") else a for a in links.artifacts]})


@router.post(
    "",
    status_code=202,
    response_model=ErasureOut,
    responses={202: {"description": "Accepted: the request, queued or awaiting approval.", "headers": LOCATION}},
    summary="File an erasure (takedown) request.",
    description="Validates the request, then writes it with its job and audit event in one transaction. "
    "Tenants with `require_approval` hold it in `awaiting_approval` until another key approves it.",
)
@authenticated_in(Scope.erasures_write)
async def submit_erasure(
    request: Request, body: ErasureCreate, credentials: Credentials, idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    # The hot path: transaction, key, scope, work and commit in one thread-pool call.
    def handle(session: Session, principal: Principal) -> JSONResponse:
        def work() -> ErasureOut:
            if body.model_version is not None:  # not the head: a version of this tenant's model, not failed
                versions.check_erasable(session, principal, body.model_id, body.model_version)
            return service.submitted_out(service.submit(session, principal, body))

        return idempotent(
            request, session, principal, idempotency_key, body, 202, work,
            headers=lambda out: {"Location": f"/v1/erasures/{out['id']}"},
        )

    return await in_transaction(request, credentials, Scope.erasures_write, handle)


@router.get("", response_model=Page[ErasureOut], summary="List erasure requests, newest first.")
def list_erasures(
    session: SessionDep,
    principal: Reader,
    status: RequestStatus | None = None,
    model_id: uuid.UUID | None = None,
    label: Annotated[SafeText | None, Query(max_length=64)] = None,
    due_before: UtcTimestamp | None = None,
    external_reference: Annotated[
        SafeText | None, Query(max_length=200, description="Requests whose legal.external_reference contains this "
                               "text (case-insensitive).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[ErasureOut]:
    rows, next_cursor = service.list_page(
        session, principal, limit=limit, cursor=cursor, status=status, model_id=model_id, label=label,
        due_before=due_before, external_reference=external_reference,
    )
    jobs = repository.latest_jobs(session, [r.id for r in rows])
    return Page[ErasureOut](items=[service.to_out(r, jobs.get(r.id)) for r in rows], next_cursor=next_cursor)


@router.get(
    "/{request_id}", response_model=ErasureOut, summary="One request: status, progress, artifacts.",
    description="Read-only (poll it freely): `artifacts` lists the outputs of a succeeded request with size and "
    "sha256; download links come from `POST /v1/erasures/{request_id}/artifact-links`.",
)
def get_erasure(request_id: uuid.UUID, session: SessionDep, principal: Reader) -> ErasureOut:
    found = service.get(session, principal, request_id)
    job = repository.latest_jobs(session, [found.id]).get(found.id)
    return service.to_out(found, job, service.artifacts(session, found, job))


@router.post(
    "/{request_id}/artifact-links", response_model=ArtifactLinks,
    summary="Issue expiring download links for a succeeded request's artifacts (audited).",
    description="Each call signs fresh links (S3 presigned GETs, or signed `/v1/objects/...` links into this API "
    "for a file store) valid for `expires_in_s` seconds, and records one `artifact.link_issued` audit event "
    "naming the caller and the files. Safe to repeat; it takes no body and no Idempotency-Key. "
    "409 `artifacts-unavailable` until the request has succeeded.",
)
def issue_artifact_links(
    request: Request, request_id: uuid.UUID, session: SessionDep, settings: SettingsDep, principal: Reader
) -> ArtifactLinks:
    found = service.get(session, principal, request_id)
    job = repository.latest_jobs(session, [found.id]).get(found.id)
    return _absolute(request, service.issue_artifact_links(session, settings, principal, found, job))


def _decision(
    request: Request, session: SessionDep, principal: Principal, key: str | None, request_id: uuid.UUID,
    body: dict[str, object], status_code: int, action: str,
) -> JSONResponse:
    def work() -> ErasureOut:
        if action == "cancel":
            changed = service.cancel(session, principal, request_id)
        elif action == "approve":
            changed = service.approve(session, principal, request_id)
        else:
            changed = service.reject(session, principal, request_id, str(body["reason"]))
        session.flush()
        job = repository.latest_jobs(session, [changed.id]).get(changed.id)
        return service.to_out(changed, job)

    return idempotent(request, session, principal, key, body, status_code, work)


@router.post(
    "/{request_id}/cancel", status_code=202, response_model=ErasureOut,
    summary="Cancel: at once before a worker holds it; a running job stops at its next step.",
)
def cancel_erasure(
    request: Request, request_id: uuid.UUID, session: SessionDep, principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return _decision(request, session, principal, idempotency_key, request_id, {}, 202, "cancel")


@router.post(
    "/{request_id}/approve", response_model=ErasureOut,
    summary="Approve a request awaiting approval (four eyes: not by its submitter).",
)
def approve_erasure(
    request: Request, request_id: uuid.UUID, session: SessionDep, principal: Approver,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return _decision(request, session, principal, idempotency_key, request_id, {}, 200, "approve")


@router.post("/{request_id}/reject", response_model=ErasureOut, summary="Reject a request, with a reason.")
def reject_erasure(
    request: Request, request_id: uuid.UUID, body: DecisionIn, session: SessionDep, principal: Approver,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return _decision(request, session, principal, idempotency_key, request_id, body.model_dump(), 200, "reject")


@router.post(
    "/{request_id}/rebase", status_code=202, response_model=ErasureOut,
    responses={202: {"description": "Accepted: the new request, on the head.", "headers": LOCATION}},
    summary="Re-run an erasure on the model's current head: a new request, linked by `rebased_from`.",
    description="For an erasure refused with 409 `stale-base`: same concepts, parameters and verification, on "
    "the head; it goes through approval like any submission. 409 when it already runs on the head or was applied.",
)
def rebase_erasure(
    request: Request, request_id: uuid.UUID, session: SessionDep, principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def work() -> ErasureOut:
        return service.submitted_out(versions.rebase(session, principal, request_id))

    return idempotent(request, session, principal, idempotency_key, {}, 202, work,
                      headers=lambda out: {"Location": f"/v1/erasures/{out['id']}"})
