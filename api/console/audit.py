"""The audit trail in the console: the tenant's events with filters, and verifying the whole chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import TypeAdapter, ValidationError

from api.console import forms
from api.console.web import CSRF_FIELD, PREFIX, Console, ConsoleDep, check_csrf, render
from api.deps import SessionDep
from core.audit import service as audit
from core.errors import ValidationFailed
from core.pagination import DEFAULT_LIMIT
from core.tenancy.schemas import Scope

router = APIRouter(prefix=PREFIX)
_when = TypeAdapter(datetime)


def _time(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = _when.validate_python(forms.utc_datetime(value.strip()))
    except ValidationError:
        raise ValidationFailed(f"{name} is not a date and time (e.g. 2026-12-01T09:00)", field=name)
    if parsed.tzinfo is None:
        raise ValidationFailed(f"{name}: give a timezone (e.g. 2026-12-01T12:00:00Z)", field=name)
    return parsed


def _page(request: Request, session: Any, who: Console, filters: dict[str, str], cursor: str | None,
          report: Any = None) -> HTMLResponse:
    rows, next_cursor = audit.list_page(
        session, who.principal.tenant_id, subject=filters["subject"] or None, action=filters["action"] or None,
        since=_time("since", filters["since"]), until=_time("until", filters["until"]), limit=DEFAULT_LIMIT,
        cursor=cursor,
    )
    return render(request, "audit.html", who, events=rows, next_cursor=next_cursor, filters=filters, report=report)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request, session: SessionDep, who: ConsoleDep,
    subject: Annotated[str, Query(max_length=200)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    who.require(Scope.audit_read)
    filters = {"subject": subject.strip(), "action": action.strip(), "since": since.strip(), "until": until.strip()}
    return _page(request, session, who, filters, cursor)


@router.post("/audit/verify", response_class=HTMLResponse)
def verify_chain(
    request: Request, session: SessionDep, who: ConsoleDep,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
) -> HTMLResponse:
    check_csrf(request, who, csrf_token)
    who.require(Scope.audit_read)
    report = audit.verify(session)
    filters = {"subject": "", "action": "", "since": "", "until": ""}
    return _page(request, session, who, filters, None, report)
