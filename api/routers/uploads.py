"""POST /v1/uploads: example images of a concept (PNG/JPEG/WebP), GET /v1/uploads/{id}."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import JSONResponse

from api.deps import SessionDep, SettingsDep, require
from api.errors import COMMON_ERRORS, problems
from api.idempotency import IdempotencyKey, idempotent
from api.openapi import LOCATION
from core.errors import PayloadTooLarge
from core.tenancy.schemas import Principal, Scope
from core.uploads import service
from core.uploads.schemas import UploadOut

router = APIRouter(prefix="/v1/uploads", tags=["uploads"], responses=problems(*COMMON_ERRORS))

Writer = Annotated[Principal, Depends(require(Scope.erasures_write))]
Reader = Annotated[Principal, Depends(require(Scope.erasures_read))]


@router.post(
    "",
    status_code=201,
    response_model=UploadOut,
    responses={201: {"description": "Stored.", "headers": LOCATION}},
    summary="Upload an example image (PNG, JPEG or WebP); returns its id and sha256.",
    description="The image is fully decoded and size-checked before it is stored. Use the id in "
    "`concepts[].example_images` of an erasure request.",
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"examples": {"image": {
        "summary": "one image file",
        "value": {"file": "(binary content of a PNG, JPEG or WebP file, e.g. curl -F file=@notice.png)"},
    }}}}}},
)
def create_upload(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Writer,
    file: Annotated[UploadFile, File(description="The image file.")],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the upload exceeds {settings.max_upload_bytes} bytes")
    fingerprint = {"sha256": hashlib.sha256(data).hexdigest(), "filename": file.filename}

    def work() -> UploadOut:
        return UploadOut.model_validate(service.create(session, settings, principal, data, file.filename))

    return idempotent(
        request, session, principal, idempotency_key, fingerprint, 201, work,
        headers=lambda out: {"Location": f"/v1/uploads/{out['id']}"},
    )


@router.get("/{upload_id}", response_model=UploadOut, summary="One upload's metadata.")
def get_upload(upload_id: uuid.UUID, session: SessionDep, principal: Reader) -> UploadOut:
    return UploadOut.model_validate(service.get(session, principal, upload_id))
