"""Domain errors. Services raise these; api/ renders each kind as one RFC 9457 problem type.

`kind` is stable: it becomes the problem `type` URI (https://lethe.dev/problems/<kind>) and picks the
HTTP status in api/errors.py. core/ never mentions HTTP status codes.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")

class LetheError(Exception):
    kind: str = "error"
    title: str = "Error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(LetheError):
    kind = "not-found"
    title = "Not found"


def found(value: T | None, what: str) -> T:
    """The get-or-404 of every service: `value`, or NotFound ("<what> not found", a 404 problem) if None."""
    if value is None:
        raise NotFound(f"{what} not found")
    return value


class Conflict(LetheError):
    kind = "conflict"
    title = "Conflict"


class InvalidTransition(Conflict):
    kind = "invalid-transition"
    title = "State transition not allowed"


class ValidationFailed(LetheError):
    kind = "validation"
    title = "Invalid request"


class Unauthorized(LetheError):
    kind = "unauthorized"
    title = "Authentication required"


class Forbidden(LetheError):
    kind = "forbidden"
    title = "Not allowed"


class Unavailable(LetheError):
    kind = "unavailable"
    title = "Service unavailable"


class StaleAttempt(Conflict):
    """A worker tried to write results with an attempt number (fencing token) that is no longer current."""

    kind = "stale-attempt"
    title = "Stale job attempt"


class IdempotencyKeyReused(LetheError):
    """The same Idempotency-Key was sent with a different request (body, method or path)."""

    kind = "idempotency-key-reused"
    title = "Idempotency key reused with another request"


class IdempotencyInFlight(Conflict):
    """The first request with this Idempotency-Key has not finished yet."""

    kind = "idempotency-in-flight"
    title = "A request with this idempotency key is still in flight"


class PayloadTooLarge(LetheError):
    kind = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(LetheError):
    kind = "unsupported-media-type"
    title = "Unsupported media type"


class RateLimited(LetheError):
    kind = "rate-limited"
    title = "Too many requests"
