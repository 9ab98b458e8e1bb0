"""Batch erasures: per model one request, or a chain of one per concept, under a batch id; aggregated status."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import SessionDep, require
from api.errors import COMMON_ERRORS, problems
from api.idempotency import IdempotencyKey, idempotent
from api.openapi import LOCATION
from core.batches import service
from core.batches.schemas import BatchCreate, BatchOut
from core.tenancy.schemas import Principal, Scope

router = APIRouter(tags=["batches"], responses=problems(*COMMON_ERRORS))
Reader = Annotated[Principal, Depends(require(Scope.erasures_read))]
Writer = Annotated[Principal, Depends(require(Scope.erasures_write))]


@router.post(
    "/v1/erasures/batch", status_code=202, response_model=BatchOut,
    responses={202: {"description": "Accepted: the batch and its requests.", "headers": LOCATION}},
    summary="Erase the same concepts from many models.",
    description="Creates the erasure requests for the selected models (explicit ids, a tag, or all ready "
    "models) under one `batch_id`, in one transaction: either every request is created or none. Per model: one "
    "request with every concept (`combined`, the default), or a chain of one request per concept, each run "
    "on the version the one before it made and applied on success (`combined: false`).",
)
def submit_batch(request: Request, body: BatchCreate, session: SessionDep, principal: Writer,
                 idempotency_key: IdempotencyKey = None) -> JSONResponse:
    def work() -> BatchOut:
        batch = service.submit(session, principal, body)
        session.flush()
        return service.get(session, principal.tenant_id, batch.id)

    return idempotent(request, session, principal, idempotency_key, body.model_dump(mode="json"), 202, work,
                      headers=lambda out: {"Location": f"/v1/batches/{out['id']}"})


@router.get("/v1/batches/{batch_id}", response_model=BatchOut, summary="A batch and its aggregated status.")
def get_batch(batch_id: uuid.UUID, session: SessionDep, principal: Reader) -> BatchOut:
    return service.get(session, principal.tenant_id, batch_id)
