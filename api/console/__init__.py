"""The web console at /console: server-rendered pages (Jinja2) over the same core services as the JSON API.

`router` holds every page; `STATIC_DIR` (stylesheet, console.js) is mounted at /console/static by the app.
"""

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from api.console import audit, auth, models, requests
from api.console.web import PREFIX, STATIC_DIR, handle_exception, see_other

router = APIRouter(include_in_schema=False)
for _module in (auth, requests, models, audit):
    router.include_router(_module.router)


@router.get(PREFIX)
def console_root() -> RedirectResponse:
    return see_other(f"{PREFIX}/")


__all__ = ["PREFIX", "STATIC_DIR", "handle_exception", "router"]
