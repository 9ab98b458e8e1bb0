"""Registered models: POST/GET /v1/models."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.deps import SessionDep, SettingsDep, require
from api.errors import COMMON_ERRORS, problems
from api.idempotency import IdempotencyKey, idempotent
from api.openapi import LOCATION
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from core.registry import service
from core.registry.models import ModelStatus
from core.registry.schemas import ModelCreate, ModelOut, ModelSettings
from core.tenancy.schemas import Principal, Scope

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problems(*COMMON_ERRORS))

Reader = Annotated[Principal, Depends(require(Scope.models_read))]
Writer = Annotated[Principal, Depends(require(Scope.models_write))]


@router.post(
    "",
    status_code=201,
    response_model=ModelOut,
    responses={201: {"description": "Registered (validation queued).", "headers": LOCATION}},
    summary="Register a model (queues its validation job).",
)
def register_model(
    request: Request, body: ModelCreate, session: SessionDep, settings: SettingsDep, principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def work() -> ModelOut:
        return ModelOut.model_validate(service.register(session, settings, principal, body))

    return idempotent(
        request, session, principal, idempotency_key, body.model_dump(mode="json"), 201, work,
        headers=lambda out: {"Location": f"/v1/models/{out['id']}"},
    )


@router.get("", response_model=Page[ModelOut], summary="List the tenant's models, newest first.")
def list_models(
    session: SessionDep,
    principal: Reader,
    status: ModelStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[ModelOut]:
    rows, next_cursor = service.list_page(session, principal, limit=limit, cursor=cursor, status=status)
    return Page[ModelOut](items=[ModelOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{model_id}", response_model=ModelOut, summary="One model.")
def get_model(model_id: uuid.UUID, session: SessionDep, principal: Reader) -> ModelOut:
    return ModelOut.model_validate(service.get(session, principal, model_id))


@router.patch("/{model_id}", response_model=ModelOut, summary="Change a model's settings (`auto_apply`; audited).")
def update_model(model_id: uuid.UUID, body: ModelSettings, session: SessionDep, principal: Writer) -> ModelOut:
    return ModelOut.model_validate(service.set_auto_apply(session, principal, model_id, body.auto_apply))
