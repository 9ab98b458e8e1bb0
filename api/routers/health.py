"""Liveness, readiness and Prometheus metrics (no authentication: probes and scrapers call these)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import text

from api.errors import problem_response, problems
from core.logging import get_logger

router = APIRouter(tags=["health"])
log = get_logger(__name__)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Health, responses=problems(500), summary="The process is up.")
def healthz() -> Health:
    return Health(status="ok")


def _check_database(request: Request) -> str:
    with request.app.state.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return "ok"


def _check_broker(request: Request) -> str:
    url: str = request.app.state.settings.broker_url
    if not url:
        return "embedded"
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return "ok"
    return "unchecked"


def _check_store(request: Request) -> str:
    from core.storage import get_store

    get_store(request.app.state.settings).ping()
    return "ok"


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=problems(500, 503),
    summary="Database, broker and object store are reachable (503 problem otherwise).",
)
def readyz(request: Request) -> Any:
    checks: dict[str, str] = {}
    failed = []
    for name, check in (("database", _check_database), ("broker", _check_broker), ("store", _check_store)):
        try:
            checks[name] = check(request)
        except Exception as exc:
            log.warning("readiness check failed", check=name, error=type(exc).__name__)
            checks[name] = f"unavailable: {type(exc).__name__}"
            failed.append(name)
    if failed:
        return problem_response(
            request.url.path, 503, "unavailable", "Service unavailable", f"not ready: {', '.join(failed)}",
            getattr(request.state, "request_id", None), checks=checks,
        )
    return JSONResponse({"status": "ready", "checks": checks})


@router.get(
    "/metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."},
               **problems(500)},
    response_class=Response,
    summary="Prometheus metrics: requests, latencies, jobs by state, queue depth.",
    include_in_schema=False,  # for scrapers, not API clients
)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
