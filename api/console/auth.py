"""Sign in (API key → server-side session) and sign out."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.web import (
    COOKIE,
    CSRF_FIELD,
    PREFIX,
    SIGN_IN_COOKIE,
    ConsoleDep,
    check_csrf,
    home_for,
    render,
    safe_next,
    secure_cookie,
    see_other,
)
from api.ratelimit import retry_after_seconds
from core.console import service as console
from core.db import unit_of_work
from core.errors import RateLimited, Unauthorized

router = APIRouter(prefix=PREFIX)


def _sign_in_page(request: Request, next_path: str, status_code: int = 200, error: str | None = None) -> HTMLResponse:
    token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", None, status_code, next_path=safe_next(next_path), error=error,
                      sign_in_csrf=token)
    response.set_cookie(SIGN_IN_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie(request),
                        path=PREFIX)
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, next: str = PREFIX + "/") -> HTMLResponse:
    return _sign_in_page(request, next)


@router.post("/sign-in", response_model=None)
def sign_in(
    request: Request,
    api_key: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = PREFIX + "/",
) -> Response:
    expected = request.cookies.get(SIGN_IN_COOKIE)
    if not expected or not secrets.compare_digest(expected, csrf_token):
        return _sign_in_page(request, next, 403, "The form expired; sign in again.")
    settings = request.app.state.settings
    try:
        with unit_of_work(request.app.state.engine) as session:
            signed, token = console.sign_in(session, settings, api_key)
    except Unauthorized as exc:
        return _sign_in_page(request, next, 401, f"Sign-in failed: {exc.detail}.")
    wait = request.app.state.rate_limiter.acquire(str(signed.principal.key_id))
    if wait > 0:
        raise RateLimited("rate limit exceeded for this API key", retry_after=retry_after_seconds(wait))
    target = safe_next(next)
    response: RedirectResponse = see_other(home_for(signed.principal) if target == PREFIX + "/" else target)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie(request), path=PREFIX)
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
def sign_out(
    request: Request, who: ConsoleDep, csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
) -> RedirectResponse:
    check_csrf(request, who, csrf_token)
    with unit_of_work(request.app.state.engine) as session:
        console.sign_out(session, console.SignedIn(who.principal, who.session_id, who.key_name))
    response = see_other(f"{PREFIX}/sign-in")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
