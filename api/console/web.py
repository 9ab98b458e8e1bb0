"""What every console page shares: templates, the signed-in person (cookie → server-side session), CSRF checks,
scope checks, security headers and HTML error pages.

The browser holds only a random session token (cookie `lethe_console`: HttpOnly, SameSite=Strict, Secure over
TLS, path /console). Each request resolves it through `core.console.service.resolve` in a short transaction of
its own (so an expiry is recorded even though the request then fails), takes a token from the signed-in key's
bucket of the API's rate limiter, and gives the page the session's CSRF token for its forms.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import DATABASE_DOWN, KIND_BY_STATUS, STATUS_BY_ERROR
from api.ratelimit import retry_after_seconds
from core import errors
from core.console import service as console
from core.db import unit_of_work
from core.errors import Forbidden, RateLimited, ValidationFailed
from core.logging import get_logger
from core.tenancy import service as tenancy
from core.tenancy.schemas import Principal, Scope

PREFIX = "/console"
COOKIE = "lethe_console"
# Double-submit token of the sign-in form (there is no session yet to derive one from).
SIGN_IN_COOKIE = "lethe_console_signin"
CSRF_FIELD = "csrf_token"

# No inline script or style anywhere: scripts and styles only from /console/static.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
log = get_logger(__name__)


@dataclass(frozen=True)
class Console:
    """The signed-in person of a console request and what its pages need."""

    principal: Principal
    session_id: uuid.UUID
    key_name: str
    csrf: str

    def can(self, scope: str) -> bool:
        return self.principal.has(scope)

    def require(self, scope: str) -> None:
        if not self.principal.has(scope):
            raise Forbidden(f"this page needs the '{scope}' scope", required_scope=scope)


def secure_cookie(request: Request) -> bool:
    return request.url.scheme == "https"


def _signed_in(request: Request) -> Console:
    settings = request.app.state.settings
    token = request.cookies.get(COOKIE)
    ended: errors.LetheError | None = None
    with unit_of_work(request.app.state.engine) as session:
        try:
            signed = console.resolve(session, settings, token)
        except console.SessionEnded as exc:
            ended = exc  # raised after the commit: an expiry is recorded
    if ended is not None:
        raise ended
    wait = request.app.state.rate_limiter.acquire(str(signed.principal.key_id))
    if wait > 0:
        raise RateLimited("rate limit exceeded for this API key", retry_after=retry_after_seconds(wait))
    request.state.principal = signed.principal
    assert token is not None
    return Console(signed.principal, signed.session_id, signed.key_name, console.csrf_token(settings, token))


ConsoleDep = Annotated[Console, Depends(_signed_in)]


def check_csrf(request: Request, who: Console, presented: str | None) -> None:
    token = request.cookies.get(COOKIE) or ""
    if not console.csrf_ok(request.app.state.settings, token, presented):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page and submit it again")


_NAMES_PEOPLE = frozenset({"approvals.html", "request.html", "audit.html"})
_PAGES = {"inbox.html": "inbox", "new_request.html": "new", "approvals.html": "approvals", "models.html": "models",
          "audit.html": "audit"}


def render(request: Request, template: str, who: Console | None, status_code: int = 200,
           **context: Any) -> HTMLResponse:
    """A page; `actors` (audit actor id → key name) is looked up for pages that name people."""
    if who is not None and template in _NAMES_PEOPLE:
        with unit_of_work(request.app.state.engine) as session:
            context["actors"] = tenancy.actor_names(session, who.principal.tenant_id)
    context.update(who=who, Scope=Scope, prefix=PREFIX, csrf_field=CSRF_FIELD, page=_PAGES.get(template))
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def safe_next(path: str | None) -> str:
    """Only a path inside the console (no scheme, no other host) is a place to return to after sign-in."""
    if path and path.startswith(PREFIX + "/") and not path.startswith("//") and "\\" not in path:
        return path
    return PREFIX + "/"


E = TypeVar("E", bound=enum.Enum)


def choice(kind: type[E], name: str, value: str | None) -> E | None:
    """An optional enum from a filter form (an empty choice means "any")."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValidationFailed(f"{name} must be one of {', '.join(str(m.value) for m in kind)}", field=name)


def home_for(principal: Principal) -> str:
    """The first page a person may see: the inbox, else models, else the audit trail."""
    for scope, path in ((Scope.erasures_read, "/"), (Scope.models_read, "/models"), (Scope.audit_read, "/audit")):
        if principal.has(scope):
            return PREFIX + path
    return PREFIX + "/"


def status_for(exc: errors.LetheError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]  # type: ignore[index]
    return 500


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Console errors as HTML pages (the API's are problem+json); an ended session goes to sign-in."""
    headers: dict[str, str] = {}
    if isinstance(exc, errors.Unauthorized):
        # Back to the page after signing in (a form's POST cannot be replayed: back to the console's start).
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = PREFIX + "/"
        if request.headers.get("x-console-poll") is None:
            response: Response = see_other(f"{PREFIX}/sign-in?next={quote(safe_next(target), safe='/')}")
        else:
            response = render(request, "error.html", None, 401, title="Signed out", detail=exc.detail)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response
    if isinstance(exc, errors.LetheError):
        status, title, detail = status_for(exc), exc.title, exc.detail
        if isinstance(exc, RateLimited) and "retry_after" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after"])
    elif isinstance(exc, RequestValidationError):
        status, title = 422, "Invalid request"
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
    elif isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        title = KIND_BY_STATUS.get(status, ("", "HTTP error"))[1]
        detail = exc.detail if isinstance(exc.detail, str) else title
    elif isinstance(exc, DATABASE_DOWN):
        log.warning("database unavailable", error=type(exc).__name__)
        status, title, detail = 503, "Service unavailable", "the database is unavailable; retry in a moment"
        headers["Retry-After"] = "5"
    else:
        raise exc
    response = render(request, "error.html", None, status, title=title, detail=detail, status=status)
    response.headers.update(headers)
    return response
