"""One pure-ASGI middleware for every request: request id + log context, body limits (Content-Length, and
bytes counted as a chunked body streams in), media types, the per-address limit of requests without an API
key, metrics, and the last-resort 500 (a bare problem, never a stack trace; logged once, without locals).

Pure ASGI (not BaseHTTPMiddleware) because it sits on the hot path of every request.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.console.web import SECURITY_HEADERS
from api.errors import problem_response
from api.metrics import Metrics
from api.ratelimit import RateLimiter, client_address, throttle_anonymous
from core.errors import PayloadTooLarge, RateLimited
from core.logging import bind_context, get_logger

log = get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
MULTIPART_PATHS = ("/v1/uploads",)
# The web console: HTML forms (urlencoded, or multipart with an image), its own security headers.
CONSOLE_PREFIX = "/console"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
CONSOLE_HEADERS = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
# Orchestrator probes: never throttled.
UNTHROTTLED_PATHS = frozenset({"/healthz", "/readyz"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class ApiMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int, metrics: Metrics,
                 rate_limiter: RateLimiter) -> None:
        self.app = app
        self.rate_limiter = rate_limiter
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        method: str = scope["method"]
        is_console = path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if is_console:
                    headers.extend(CONSOLE_HEADERS)
                message = {**message, "headers": headers}
            await send(message)

        body = _BodyCounter(receive, self.max_upload_bytes if path.startswith(MULTIPART_PATHS) or is_console
                            else self.max_body_bytes)

        async def app_send(message: Message) -> None:
            # Once the body has overrun its limit, whatever the app answers (FastAPI turns an error raised while
            # reading the body into a 400) is replaced by one 413.
            if body.exceeded:
                if message["type"] == "http.response.start" and not status_holder["started"]:
                    await self._too_large(path, request_id, body.limit)(scope, receive, send_wrapper)
                return
            await send_wrapper(message)

        with bind_context(request_id=request_id):
            try:
                early = self._reject_early(scope, path, method, request_id)
                if early is None:
                    early = await self._throttle_anonymous(scope, path, request_id)
                if early is not None:
                    await early(scope, receive, send_wrapper)
                else:
                    await self.app(scope, body.receive, app_send)
            except Exception as exc:
                if not status_holder["started"]:
                    if body.exceeded:
                        response = self._too_large(path, request_id, body.limit)
                    else:
                        _log_unhandled(exc, path, method)
                        response = problem_response(
                            path, 500, "internal", "Internal error",
                            "an unexpected error occurred; quote the request id when reporting it", request_id,
                        )
                    await response(scope, receive, send_wrapper)
                else:
                    _log_unhandled(exc, path, method)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.metrics.observe(method, template, status_holder["status"], time.perf_counter() - started)

    @staticmethod
    def _too_large(path: str, request_id: str, limit: int) -> Any:
        return problem_response(
            path, 413, "payload-too-large", "Payload too large",
            f"the request body exceeds {limit} bytes", request_id, limit=limit,
        )

    async def _throttle_anonymous(self, scope: Scope, path: str, request_id: str) -> Any:
        """429 for a request without an Authorization header once its address used up its budget (requests
        that present a key are limited per key, or per address when the key is not valid, in api.deps)."""
        if (not self.rate_limiter.anonymous_enabled or path in UNTHROTTLED_PATHS
                or _header(scope, b"authorization") is not None):
            return None
        try:
            await anyio.to_thread.run_sync(throttle_anonymous, self.rate_limiter, client_address(scope))
        except RateLimited as exc:
            return problem_response(path, 429, exc.kind, exc.title, exc.detail, request_id,
                                    {"Retry-After": str(exc.extra["retry_after"])})
        return None

    def _reject_early(self, scope: Scope, path: str, method: str, request_id: str) -> Any:
        """413 from Content-Length, 415 from Content-Type — before any of the body is read."""
        if method not in _BODY_METHODS:
            return None
        is_upload = path.startswith(MULTIPART_PATHS)
        is_console = path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
        length_header = _header(scope, b"content-length")
        limit = self.max_upload_bytes if is_upload or is_console else self.max_body_bytes
        if length_header is not None and length_header.isdigit() and int(length_header) > limit:
            return self._too_large(path, request_id, limit)
        has_body = (length_header is not None and length_header != "0") or _header(scope, b"transfer-encoding")
        if not has_body:
            return None
        content_type = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        if is_upload:
            ok = content_type == "multipart/form-data"
            expected = "multipart/form-data"
        elif is_console:
            ok = content_type in FORM_TYPES
            expected = " or ".join(FORM_TYPES)
        else:
            ok = content_type == "application/json" or (content_type.startswith("application/")
                                                         and content_type.endswith("+json"))
            expected = "application/json"
        if ok:
            return None
        return problem_response(
            path, 415, "unsupported-media-type", "Unsupported media type",
            f"send the body as {expected} (got {content_type or 'no Content-Type'})", request_id,
        )


class _BodyCounter:
    """Counts body bytes as they stream in (a chunked body has no Content-Length): past `limit` the receive
    raises, and `exceeded` tells the middleware to answer 413 whatever the app made of the error."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self.limit = limit
        self.seen = 0
        self.exceeded = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.exceeded = True
                raise PayloadTooLarge(f"the request body exceeds {self.limit} bytes", limit=self.limit)
        return message


def _log_unhandled(exc: Exception, path: str, method: str) -> None:
    """One line per unexpected error: the exception type, message and a plain traceback (frames only, no local
    variables; core.logging redacts credentials in what remains)."""
    log.error("unhandled error", path=path, method=method, error=type(exc).__name__, exc_info=exc)
