"""The FastAPI application factory: `create_app(settings)`.

Routers are listed in `_routers()`: add one line per resource (`api/routers/<resource>.py` exposing `router`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from api.errors import HANDLED, Problem, handle_exception
from api.metrics import Metrics
from api.middleware import ApiMiddleware
from api.ratelimit import RateLimiter
from core.config import Settings, get_settings
from core.datadir import secure_data_dir
from core.db import get_engine
from core.logging import configure_logging

API_DESCRIPTION = """Lethe erases concepts from text-to-image diffusion models (SPARE), with proof and an audit trail.

* Authenticate with an API key: `Authorization: Bearer lth_...` (`lethe keys create` makes one).
* Every POST accepts an `Idempotency-Key` header (Stripe semantics, kept 24 h).
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
        webhooks,
    )

    return [
        health.router,
        models.router,
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
    )
    app.state.settings = settings
    app.state.engine = get_engine(settings)
    app.state.metrics = Metrics(app.state.engine)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)

    for exc_class in HANDLED:
        app.add_exception_handler(exc_class, handle_exception)
    app.add_middleware(
        ApiMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        metrics=app.state.metrics,
    )
    for router in _routers():
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes,
                openapi_version=app.openapi_version,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
