"""Request-scoped dependencies: settings, the one transaction of a request, the authenticated principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.ratelimit import retry_after_seconds
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


def get_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("send an API key: Authorization: Bearer lth_...")
    principal = tenancy.authenticate(session, request.app.state.settings, credentials.credentials)
    wait = request.app.state.rate_limiter.acquire(str(principal.key_id))
    if wait > 0:
        raise RateLimited("rate limit exceeded for this API key", retry_after=retry_after_seconds(wait))
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(scope: str) -> Callable[..., Principal]:
    """Dependency: the principal, if its key holds `scope` (or `admin`); 403 otherwise."""

    async def check(principal: PrincipalDep) -> Principal:  # async: no I/O, no thread-pool hop
        if not principal.has(scope):
            raise Forbidden(f"this operation needs the '{scope}' scope", required_scope=scope)
        return principal

    check.__name__ = f"require_{scope.replace(':', '_')}"
    return check


__all__ = ["PrincipalDep", "SessionDep", "SettingsDep", "get_session", "require"]
