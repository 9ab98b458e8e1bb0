"""The Idempotency-Key header on POST operations, wired to core.idempotency.

Usage in a router: `return idempotent(request, session, principal, key, body_for_fingerprint, status, work)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from core.db import unit_of_work
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


def _begin(request: Request, principal: Principal, key: str, fp: str) -> service.Claimed | service.Replay:
    engine = request.app.state.engine
    settings = request.app.state.settings
    args = {"tenant_id": principal.tenant_id, "key": key, "fp": fp, "method": request.method,
            "path": request.url.path, "ttl_hours": settings.idempotency_ttl_hours}
    # Fast path: a new key is one INSERT. If the key exists (or a concurrent first request holds it),
    # look at it under a row lock (begin): replay, 409, 422, takeover or expiry.
    try:
        with unit_of_work(engine) as claim_session:
            return service.claim_new(claim_session, **args)
    except sa_exc.IntegrityError:
        pass
    except sa_exc.OperationalError:
        if engine.dialect.name != "sqlite":
            raise
    for attempt in range(6):
        try:
            with unit_of_work(engine) as claim_session:
                return service.begin(claim_session, **args)
        except sa_exc.IntegrityError:
            # A concurrent first request inserted the same key and committed: look again.
            continue
        except sa_exc.OperationalError:
            if engine.dialect.name != "sqlite" or attempt == 5:
                raise
            time.sleep(0.01 * (attempt + 1))  # SQLite writer contention (busy snapshot): retry
    raise RuntimeError("idempotency claim did not settle")  # unreachable in practice


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
) -> JSONResponse:
    """Run `work` at most once per key; its JSON response is stored with its effects (same transaction)."""
    if key is None:
        result = _json(work())
        return JSONResponse(result, status_code=status_code, headers=headers(result) if headers else None)
    fp = service.fingerprint(request.method, request.url.path, jsonable_encoder(fingerprint_body))
    outcome = _begin(request, principal, key, fp)
    if isinstance(outcome, service.Replay):
        return JSONResponse(outcome.body, status_code=outcome.status,
                            headers={**outcome.headers, REPLAYED_HEADER: "true"})
    try:
        result = _json(work())
        extra = headers(result) if headers else {}
        service.finish(session, outcome, status_code, result, extra)
        session.flush()
    except BaseException:
        session.rollback()  # release the work's locks before the claim is deleted on another connection
        with unit_of_work(request.app.state.engine) as release_session:
            service.release(release_session, outcome)
        raise
    return JSONResponse(result, status_code=status_code, headers=extra or None)
