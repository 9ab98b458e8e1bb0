"""Registered models in the console: list with validation status, register."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console import forms
from api.console.requests import FormDep
from api.console.web import CSRF_FIELD, PREFIX, Console, ConsoleDep, check_csrf, choice, render, see_other, status_for
from api.deps import SessionDep
from core.db import unit_of_work
from core.errors import LetheError
from core.pagination import DEFAULT_LIMIT
from core.registry import service as registry
from core.registry.models import ModelStatus
from core.registry.schemas import ModelCreate
from core.tenancy.schemas import Scope

router = APIRouter(prefix=PREFIX)


def _page(request: Request, session: Any, who: Console, cursor: str | None, status: ModelStatus | None,
          values: dict[str, Any], errors: dict[str, list[str]], status_code: int = 200) -> HTMLResponse:
    rows, next_cursor = registry.list_page(session, who.principal, limit=DEFAULT_LIMIT, cursor=cursor, status=status)
    return render(request, "models.html", who, status_code, models=rows, next_cursor=next_cursor,
                  statuses=list(ModelStatus), status=status.value if status else "", values=values, errors=errors)


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request, session: SessionDep, who: ConsoleDep, status: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    who.require(Scope.models_read)
    return _page(request, session, who, cursor, choice(ModelStatus, "status", status), {}, {})


@router.post("/models", response_model=None)
def register_model(request: Request, session: SessionDep, who: ConsoleDep, form: FormDep) -> Response:
    check_csrf(request, who, form.get(CSRF_FIELD))
    who.require(Scope.models_write)
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
    body, errors = forms.validate(ModelCreate, forms.model_body(form), forms.MODEL_FIELDS)
    if body is None:
        return _page(request, session, who, None, None, values, errors, 422)
    try:
        with unit_of_work(request.app.state.engine) as tx:
            registry.register(tx, request.app.state.settings, who.principal, body)
    except LetheError as exc:
        field = "name" if exc.kind == "model-name-taken" else "source_uri"
        return _page(request, session, who, None, None, values, {field: [exc.detail]}, status_for(exc))
    return see_other(f"{PREFIX}/models")
