"""The Idempotency-Key header on POST operations, wired to core.idempotency.

Usage in a router: `return idempotent(request, session, principal, key, body_for_fingerprint, status, work)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from core.idempotency import service
from core.tenancy.schemas import Principal

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes the POST safe to retry: same key + same body replays the first response "
        "(kept >= 24 h); same key + another body → 422; while the first is in flight → 409.",
    ),
]

REPLAYED_HEADER = "Idempotent-Replayed"


def _json(value: Any) -> Any:
    # pydantic's own serializer is much cheaper than FastAPI's generic jsonable_encoder on the hot path.
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return jsonable_encoder(value)


def idempotent(
    request: Request,
    session: Session,
    principal: Principal,
    key: str | None,
    fingerprint_body: Any,
    status_code: int,
    work: Callable[[], Any],
    headers: Callable[[Any], dict[str, str]] | None = None,
    stored: Callable[[Any], Any] | None = None,
) -> JSONResponse:
    """Run `work` at most once per key; its JSON response is stored with its effects (same transaction).

    `fingerprint_body`: the request body (a pydantic model, or plain data) that a reuse must repeat.
    `stored`: what of the response is kept for replays, when not all of it may be (a secret shown once)."""
    if key is None:
        result = _json(work())
        return JSONResponse(result, status_code=status_code, headers=headers(result) if headers else None)
    path = request.url.path
    fp = service.fingerprint(request.method, path, _json(fingerprint_body))
    outcome = service.start(session, tenant_id=principal.tenant_id, key=key, fp=fp, method=request.method,
                            path=path, ttl_hours=request.app.state.settings.idempotency_ttl_hours)
    if isinstance(outcome, service.Replay):
        return JSONResponse(outcome.body, status_code=outcome.status,
                            headers={**outcome.headers, REPLAYED_HEADER: "true"})
    # Any exception from here on rolls the request's transaction back: the work and the key together.
    result = _json(work())
    extra = headers(result) if headers else {}
    service.finish(session, outcome, status_code, stored(result) if stored else result, extra)
    return JSONResponse(result, status_code=status_code, headers=extra or None)
