"""Model versions and the head: GET/POST /v1/models/{id}/versions, PUT /v1/models/{id}/head."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from api.deps import SessionDep, SettingsDep, require
from api.errors import COMMON_ERRORS, problems
from api.idempotency import IdempotencyKey, idempotent
from api.openapi import LOCATION
from core.registry.schemas import ModelOut
from core.tenancy.schemas import Principal, Scope
from core.versions import service
from core.versions.schemas import HeadMove, VersionApply, VersionList, VersionOut

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problems(*COMMON_ERRORS))

Reader = Annotated[Principal, Depends(require(Scope.models_read))]
Writer = Annotated[Principal, Depends(require(Scope.models_write))]
Number = Annotated[int, Path(ge=1, le=1_000_000, description="The version number (1: the source).")]


@router.get("/{model_id}/versions", response_model=VersionList,
            summary="The model's versions, oldest first, and its head.",
            description="Download links are issued by `GET /v1/models/{model_id}/versions/{number}` (audited); "
            "here `url` is null.")
def list_versions(model_id: uuid.UUID, session: SessionDep, principal: Reader) -> VersionList:
    model, rows = service.list_versions(session, principal, model_id)
    return VersionList(head=model.head_version, items=[service.to_out(model, v) for v in rows])


@router.get("/{model_id}/versions/{number}", response_model=VersionOut,
            summary="One version: lineage, files with expiring links (audited), certificate.")
def get_version(model_id: uuid.UUID, number: Number, session: SessionDep, settings: SettingsDep,
                principal: Reader) -> JSONResponse:
    # The certificate goes out byte-for-byte as stored (its signature covers it), like GET .../certificate.
    return JSONResponse(service.version_out(session, settings, principal, model_id, number))


@router.post(
    "/{model_id}/versions", status_code=201, response_model=VersionOut,
    responses={201: {"description": "Applied: the version exists (pending until its files are stored) and is "
                                    "the head.", "headers": LOCATION}},
    summary="Apply a succeeded erasure that ran on the head: the next version (audited).",
    description="409 `stale-base` when the erasure ran on a version that is no longer the head (the problem "
    "names `head`; re-run it with `POST /v1/erasures/{id}/rebase`), `already-applied`, `erasure-not-applicable` "
    "for an erasure that has not succeeded. The head moves to the new version at once; an `apply_version` job "
    "stores its files and marks it `ready` (`model.version.created`).",
)
def apply_erasure(
    request: Request, model_id: uuid.UUID, body: VersionApply, session: SessionDep, principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def work() -> VersionOut:
        version = service.apply(session, principal.tenant_id, model_id, body.erasure_id, actor=principal.actor)
        return service.to_out(service.model_of(session, principal, model_id), version)

    return idempotent(request, session, principal, idempotency_key, body.model_dump(mode="json"), 201, work,
                      headers=lambda out: {"Location": f"/v1/models/{model_id}/versions/{out['number']}"})


@router.put("/{model_id}/head", response_model=ModelOut,
            summary="Roll the head back or forward to a ready version (reason required, audited).")
def move_head(model_id: uuid.UUID, body: HeadMove, session: SessionDep, principal: Writer) -> ModelOut:
    return ModelOut.model_validate(service.move_head(session, principal.tenant_id, model_id, body,
                                                    actor=principal.actor))
