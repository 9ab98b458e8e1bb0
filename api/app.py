"""The FastAPI application factory: `create_app(settings)`.

Routers are listed in `_routers()`: add one line per resource (`api/routers/<resource>.py` exposing `router`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from api import console
from api import openapi as openapi_doc
from api.errors import HANDLED, handle_exception
from api.metrics import Metrics
from api.middleware import ApiMiddleware
from api.ratelimit import RateLimiter
from core.config import Settings, get_settings
from core.datadir import secure_data_dir
from core.db import get_engine
from core.logging import configure_logging

API_DESCRIPTION = """Lethe erases concepts from text-to-image diffusion models (SPARE), with proof and an audit trail.

* Authenticate with an API key: `Authorization: Bearer lth_...` (`lethe keys create` makes one).
* Every POST that creates or changes something accepts an `Idempotency-Key` header (Stripe semantics, kept
  24 h); `POST /v1/erasures/{id}/artifact-links` issues fresh links on each call and takes none.
* Webhook events and their payloads are described under `webhooks`.
* Errors are RFC 9457 `application/problem+json` with `type = https://lethe.dev/problems/<kind>`.
"""


def _routers() -> list[APIRouter]:
    from api.routers import (
        audit,
        batches,
        certificates,
        erasures,
        health,
        models,
        objects,
        schedules,
        uploads,
        versions,
        webhooks,
    )

    return [
        health.router,
        models.router,
        versions.router,
        batches.router,  # before erasures: POST /v1/erasures/batch
        erasures.router,
        certificates.router,
        uploads.router,
        objects.router,
        audit.router,
        schedules.router,
        webhooks.router,
    ]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    secure_data_dir(settings)
    app = FastAPI(
        title="Lethe",
        version="0.1.0",
        description=API_DESCRIPTION,
        openapi_url="/openapi.json",
        generate_unique_id_function=openapi_doc.operation_id,
        webhooks=openapi_doc.WEBHOOKS,
    )
    app.state.settings = settings
    app.state.engine = get_engine(settings)
    app.state.metrics = Metrics(app.state.engine, job_metrics=settings.embedded)
    app.state.rate_limiter = RateLimiter(
        settings.rate_limit_per_minute, anonymous_per_minute=settings.rate_limit_anonymous_per_minute,
        storage_url=settings.rate_limit_storage_url,
    )

    async def handle(request: Request, exc: Exception) -> Response:
        # The console renders its errors as HTML pages; everything else gets problem+json.
        if request.url.path.startswith(console.PREFIX + "/") or request.url.path == console.PREFIX:
            return await console.handle_exception(request, exc)
        return await handle_exception(request, exc)

    for exc_class in HANDLED:
        app.add_exception_handler(exc_class, handle)
    app.add_middleware(
        ApiMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        metrics=app.state.metrics,
        rate_limiter=app.state.rate_limiter,
    )
    for router in _routers():
        app.include_router(router)
    app.include_router(console.router)
    app.mount(console.PREFIX + "/static", StaticFiles(directory=console.STATIC_DIR), name="console-static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_doc.build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
