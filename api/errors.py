"""RFC 9457 problem+json: the one exception handler, and the documented error responses of every route.

Every 4xx/5xx leaves the API as `application/problem+json` with `type = https://lethe.dev/problems/<kind>`,
where `kind` is the stable name of a domain error (core.errors) or of an HTTP-level failure. No stack trace
or exception text of an unexpected error ever reaches a client: those become a bare 500 `internal` problem.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import errors
from core.logging import get_logger
from core.storage.base import IntegrityError as ObjectCorrupt
from core.storage.base import ObjectNotFound
from core.storage.signing import InvalidDownloadToken

PROBLEM_BASE = "https://lethe.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

log = get_logger(__name__)

DATABASE_DOWN: tuple[type[Exception], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, sa_exc.DisconnectionError,
)

# Domain error class → HTTP status. Looked up along the exception's MRO, so subclasses inherit.
STATUS_BY_ERROR: dict[type[errors.LetheError], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.ValidationFailed: 422,
    errors.IdempotencyKeyReused: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
    ObjectNotFound: 404,
    InvalidDownloadToken: 403,
    ObjectCorrupt: 500,
}

# HTTP-level failures raised by Starlette/FastAPI themselves.
KIND_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("malformed-request", "Malformed request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation", "Invalid request"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://lethe.dev/problems/not-found",
                    "title": "Not found",
                    "status": 404,
                    "detail": "erasure request 0b8f... not found",
                    "instance": "/v1/erasures/0b8f...",
                    "request_id": "5f0c2a4e9d3b4b5c",
                }
            ]
        },
    )

    type: str = Field(description="Stable URI naming the error kind: https://lethe.dev/problems/<kind>.")
    title: str = Field(description="Short human summary of the kind.")
    status: int = Field(description="HTTP status code.")
    detail: str | None = Field(default=None, description="What went wrong with this request.")
    instance: str | None = Field(default=None, description="The request path.")
    request_id: str | None = Field(default=None, description="X-Request-ID of the request, for support.")
    errors: list[dict[str, Any]] | None = Field(default=None, description="Field errors of a 422 validation problem.")


def problem_response(
    request_path: str | None,
    status: int,
    kind: str,
    title: str,
    detail: str | None = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + kind, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    if request_path is not None:
        body["instance"] = request_path
    if request_id:
        body["request_id"] = request_id
    for key, value in extra.items():
        if key not in body and value is not None:
            body[key] = value
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _status_for(exc: errors.LetheError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]  # type: ignore[index]
    return 500


def _jsonable(value: Any) -> Any:
    """Extension members must be JSON: anything exotic (an exception in a pydantic ctx) becomes text."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        # The offending input is not echoed back: it may be large or sensitive.
        out.append({"loc": [_jsonable(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")),
                    "type": str(err.get("type", ""))})
    return out


async def handle_exception(request: Request, exc: Exception) -> JSONResponse:
    """The one exception handler: domain errors, validation errors, HTTP errors and database outages."""
    request_id = getattr(request.state, "request_id", None)
    path = request.url.path
    if isinstance(exc, errors.LetheError):
        status = _status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, errors.RateLimited) and "retry_after" in exc.extra:
            headers = {"Retry-After": str(exc.extra["retry_after"])}
        extra = {k: _jsonable(v) for k, v in exc.extra.items()}
        return problem_response(path, status, exc.kind, exc.title, exc.detail, request_id, headers, **extra)
    if isinstance(exc, RequestValidationError):
        errs = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errs):
            return problem_response(
                path, 400, "malformed-body", "Malformed request body", "the request body is not valid JSON",
                request_id, errors=errs,
            )
        return problem_response(
            path, 422, "validation", "Invalid request", "the request does not match the schema", request_id,
            errors=errs,
        )
    if isinstance(exc, StarletteHTTPException):
        kind, title = KIND_BY_STATUS.get(exc.status_code, (f"http-{exc.status_code}", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(path, exc.status_code, kind, title, detail, request_id, dict(exc.headers or {}))
    if isinstance(exc, DATABASE_DOWN):
        # Database down or unreachable (or SQLite busy past its timeout): transient, so 503, not a bug.
        log.warning("database unavailable", error=type(exc).__name__)
        return problem_response(
            path, 503, "unavailable", "Service unavailable", "the database is unavailable; retry later",
            request_id, {"Retry-After": "5"},
        )
    if isinstance(exc, sa_exc.DataError):
        # The database refused a value the schemas let through (a NUL in some text, a number out of range):
        # bad input, not a server fault. The schemas reject the known cases first; this is the last resort.
        log.warning("database refused a value", error=type(getattr(exc, "orig", exc)).__name__)
        return problem_response(
            path, 422, "validation", "Invalid request",
            "a value in the request cannot be stored (e.g. a NUL character in text or a number out of range)",
            request_id,
        )
    raise exc  # not ours: the outer middleware renders a bare 500


HANDLED: tuple[type[Exception], ...] = (
    errors.LetheError,
    RequestValidationError,
    StarletteHTTPException,
    sa_exc.DataError,
    *DATABASE_DOWN,
)

_PROBLEM_REF = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses, all rendered as problem+json."""
    descriptions = {
        400: "Malformed request (e.g. a body that is not JSON).",
        401: "Missing or invalid API key.",
        403: "The API key lacks the scope this operation needs.",
        404: "Not found (or owned by another tenant).",
        405: "Method not allowed.",
        409: "Conflict with the current state (state machine, duplicate, idempotency key in flight).",
        413: "Request body too large.",
        415: "Unsupported media type.",
        422: "Invalid request (schema, bounds, or an idempotency key reused with another body).",
        429: "Rate limit exceeded; see Retry-After.",
        500: "Internal error (a bug; the response carries a request id).",
        503: "A dependency (database, broker, object store) is unavailable.",
    }
    return {s: {"description": descriptions[s], "content": _PROBLEM_REF} for s in statuses}


# What any authenticated /v1 operation can answer besides its own codes.
COMMON_ERRORS = (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503)
