"""Cron schedules that submit erasure batches."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from api.deps import SessionDep, require
from api.errors import COMMON_ERRORS, problems
from api.idempotency import IdempotencyKey, idempotent
from api.openapi import LOCATION
from core.schedules import service
from core.schedules.schemas import ScheduleCreate, ScheduleList, ScheduleOut
from core.tenancy.schemas import Principal, Scope

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=problems(*COMMON_ERRORS))
Reader = Annotated[Principal, Depends(require(Scope.erasures_read))]
Writer = Annotated[Principal, Depends(require(Scope.erasures_write))]


@router.post(
    "", status_code=201, response_model=ScheduleOut, summary="Create a schedule.",
    responses={201: {"description": "Created.", "headers": LOCATION}},
    description="At each cron slot (read in `timezone`) the template is submitted as a batch: one erasure "
    "request per selected model. Each slot runs exactly once, however many sweepers run; after downtime, "
    "missed slots run once (not once per missed slot). Runs submit as the key that creates the schedule (its "
    "requests name that key as `submitted_by`, so four eyes applies); revoking the key pauses the schedule.",
)
def create_schedule(request: Request, body: ScheduleCreate, session: SessionDep, principal: Writer,
                    idempotency_key: IdempotencyKey = None) -> JSONResponse:
    def work() -> ScheduleOut:
        return service.to_out(service.create(session, principal, body))

    return idempotent(request, session, principal, idempotency_key, body.model_dump(mode="json"), 201, work,
                      headers=lambda out: {"Location": f"/v1/schedules/{out['id']}"})


@router.get("", response_model=ScheduleList, summary="List the tenant's schedules.")
def list_schedules(session: SessionDep, principal: Reader) -> ScheduleList:
    return ScheduleList(items=[service.to_out(s) for s in service.list_all(session, principal.tenant_id)])


@router.get("/{schedule_id}", response_model=ScheduleOut, summary="One schedule.")
def get_schedule(schedule_id: uuid.UUID, session: SessionDep, principal: Reader) -> ScheduleOut:
    return service.to_out(service.get(session, principal.tenant_id, schedule_id))


@router.delete("/{schedule_id}", status_code=204, response_class=Response, summary="Delete a schedule.")
def delete_schedule(schedule_id: uuid.UUID, session: SessionDep, principal: Writer) -> Response:
    service.delete(session, principal, schedule_id)
    return Response(status_code=204)
