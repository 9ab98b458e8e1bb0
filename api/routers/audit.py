"""The audit trail: GET /v1/audit/events, GET /v1/audit/verify."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import SessionDep, SettingsDep, require
from api.errors import COMMON_ERRORS, problems
from core.audit import service
from core.audit.schemas import AuditEventOut, ChainReportOut
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from core.tenancy.schemas import Principal, Scope
from core.timeutil import UtcTimestamp
from core.validation import SafeText

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problems(*COMMON_ERRORS))

Auditor = Annotated[Principal, Depends(require(Scope.audit_read))]


@router.get("/events", response_model=Page[AuditEventOut], summary="The tenant's audit events, oldest first.")
def list_events(
    session: SessionDep,
    principal: Auditor,
    subject: Annotated[SafeText | None, Query(max_length=200)] = None,
    action: Annotated[SafeText | None, Query(max_length=64)] = None,
    since: UtcTimestamp | None = None,
    until: UtcTimestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[AuditEventOut]:
    rows, next_cursor = service.list_page(
        session, principal.tenant_id, subject=subject, action=action, since=since, until=until, limit=limit,
        cursor=cursor,
    )
    return Page[AuditEventOut](items=[AuditEventOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/verify", response_model=ChainReportOut, summary="Verify the hash chain from its last signed checkpoint.",
    description="Recomputes the events appended since the newest signed checkpoint, checks that the chain still "
    "reaches that checkpoint (deleting the newest events is detected), then signs the current head.",
)
def verify_chain(session: SessionDep, settings: SettingsDep, principal: Auditor) -> ChainReportOut:
    report = service.verify(session, settings)
    return ChainReportOut(
        ok=report.ok, checked=service.tenant_event_count(session, principal.tenant_id, report.head_seq),
        first_broken_seq=report.first_broken_seq, problem=report.problem,  # type: ignore[arg-type]
        checkpoint_at=report.checkpoint.at if report.checkpoint else None,
    )
