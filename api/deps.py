"""Request-scoped dependencies: settings, the one transaction of a request, the authenticated principal.

Two ways to run a request's transaction:
- `SessionDep` + `PrincipalDep`/`require(scope)` on a sync endpoint: FastAPI runs the session's enter, the
  principal, the endpoint and the session's exit (commit) as four thread-pool calls;
- `in_transaction(request, credentials, scope, work)` from an async endpoint marked `@authenticated_in(scope)`
  on a router with `route_class=AuthFirstRoute`: the same steps (transaction, authentication, rate limit, scope,
  work, commit) as ONE thread-pool call. The submission hot path uses it: each hop costs CPU, a
  thread wake-up and a GIL hand-off (about 10 % of the API's CPU per submission went away with three of them).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.ratelimit import client_address, retry_after_seconds, throttle_anonymous
from core.config import Settings
from core.db import unit_of_work
from core.errors import Forbidden, RateLimited, Unauthorized
from core.tenancy import service as tenancy
from core.tenancy.schemas import Principal


async def get_app_settings(request: Request) -> Settings:  # async: no I/O, no thread-pool hop
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the endpoint returns (before the response is sent)."""
    with unit_of_work(request.app.state.engine) as session:
        yield session


# scope="function": commit happens before the response leaves, so a 2xx always means "durable".
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer lth_...`.")


# The bearer credentials as sent (parsed from the header, not yet checked): async, no I/O.
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _authenticate(request: Request, session: Session, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    try:
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise Unauthorized("send an API key: Authorization: Bearer lth_...")
        principal = tenancy.authenticate(session, request.app.state.settings, credentials.credentials)
    except Unauthorized:
        if "authorization" in request.headers:  # without the header, the middleware counted the request already
            throttle_anonymous(request.app.state.rate_limiter, client_address(request.scope))
        raise
    wait = request.app.state.rate_limiter.acquire(str(principal.key_id))
    if wait > 0:
        raise RateLimited("rate limit exceeded for this API key", retry_after=retry_after_seconds(wait))
    request.state.principal = principal
    return principal


def _check_scope(principal: Principal, scope: str) -> None:
    if not principal.has(scope):
        raise Forbidden(f"this operation needs the '{scope}' scope", required_scope=scope)


def get_principal(request: Request, session: SessionDep, credentials: Credentials) -> Principal:
    return _authenticate(request, session, credentials)


async def in_transaction(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str,
    work: Callable[[Session, Principal], T],
) -> T:
    """Run a request in one thread-pool call: open its transaction, authenticate (401, 429), check `scope`
    (403), run `work(session, principal)` and commit (roll back on any exception) — what `SessionDep` and
    `require(scope)` do, in the same order. `work` builds the response; it is returned once committed."""

    def run() -> T:
        with unit_of_work(request.app.state.engine) as session:
            principal = _authenticate(request, session, credentials)
            _check_scope(principal, scope)
            return work(session, principal)

    return await run_in_threadpool(run)


_AUTH_SCOPE = "__lethe_auth_scope__"


def authenticated_in(scope: str) -> Callable[[F], F]:
    """Marks an endpoint that authenticates inside `in_transaction(..., scope, ...)` (for `AuthFirstRoute`)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _AUTH_SCOPE, scope)
        return endpoint

    return mark


def _check_credentials(request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str) -> None:
    with unit_of_work(request.app.state.engine) as session:
        _check_scope(_authenticate(request, session, credentials), scope)


class AuthFirstRoute(APIRoute):
    """Keeps the error order of every other endpoint (401, 429, 403 before 422) for endpoints that authenticate
    inside `in_transaction`: FastAPI validates the body and headers before such an endpoint runs, so when that
    validation fails, the credentials are checked first (an error path only: one more transaction)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scope: str | None = getattr(self.endpoint, _AUTH_SCOPE, None)
        if scope is None:
            return handler

        async def auth_first(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError:
                await run_in_threadpool(_check_credentials, request, await _bearer(request), scope)
                raise

        return auth_first


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(scope: str) -> Callable[..., Principal]:
    """Dependency: the principal, if its key holds `scope` (or `admin`); 403 otherwise."""

    async def check(principal: PrincipalDep) -> Principal:  # async: no I/O, no thread-pool hop
        _check_scope(principal, scope)
        return principal

    check.__name__ = f"require_{scope.replace(':', '_')}"
    return check


__all__ = [
    "AuthFirstRoute", "Credentials", "PrincipalDep", "SessionDep", "SettingsDep", "authenticated_in",
    "get_session", "in_transaction", "require",
]
