"""GET /v1/objects/{token}: downloads signed by a file:// store's presign_get (S3 stores presign their own).

The token (opaque, authenticated-encrypted, expiring) is the authorization. The object is read through the
view of the tenant that owns its key, and its recorded sha256 is verified while it streams — a corrupted
object aborts the transfer instead of delivering wrong bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from api.deps import SettingsDep
from api.errors import problems
from core.storage import ObjectNotFound, download_signing_key, get_store
from core.storage.base import CHUNK as CHUNK_SIZE
from core.storage.signing import verify_download
from core.storage.tenant import owner_of, tenant_store

router = APIRouter(tags=["artifacts"])


@router.get(
    "/v1/objects/{token}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
              "description": "The object's bytes."},
        **problems(403, 404, 422, 500, 503),
    },
    summary="Download an artifact through a signed, expiring link.",
)
def download(token: Annotated[str, Path(max_length=2000)], settings: SettingsDep) -> StreamingResponse:
    key = verify_download(download_signing_key(settings), token)
    store = tenant_store(get_store(settings), owner_of(key))
    name = store.relative(key)
    if not store.exists(name):
        raise ObjectNotFound("the object behind this link no longer exists")
    recorded = store.recorded_sha256(name)
    reader = store.open(name, expected_sha256=recorded)

    def chunks() -> Iterator[bytes]:
        # Hold back the last chunk until the reader has hit EOF and checked the sha256: a corrupt object
        # ends in an aborted, incomplete transfer, never in a complete-looking wrong file.
        with reader:
            pending = reader.read(CHUNK_SIZE)
            while pending:
                block = reader.read(CHUNK_SIZE)  # the empty read at EOF raises IntegrityError on a mismatch
                yield pending
                pending = block

    headers = {"Content-Disposition": f'attachment; filename="{name.rsplit("/", 1)[-1]}"'}
    if recorded:
        headers["X-Checksum-SHA256"] = recorded
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)
