"""The OpenAPI document, shaped for client generators.

- Operation ids are `resource_action` (`erasures_submit`, `models_list`): the router's tag, then the endpoint's
  function name without the resource's own noun (`submit_erasure` → `submit`, `list_deliveries` stays).
- Response headers are documented where they are sent: `Location` on creations (declared by the routes with
  `LOCATION`), `Idempotent-Replayed` on every operation that takes an `Idempotency-Key`, `Retry-After` on 429
  and 503, `X-Request-ID` on every response.
- `webhooks` (OpenAPI 3.1) documents every event Lethe POSTs, with its payload schema and signature headers.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from api.errors import Problem
from core.webhooks.schemas import WEBHOOK_EVENTS

_STRING = {"schema": {"type": "string"}}
LOCATION = {"Location": {"description": "Path of the created resource.", **_STRING}}
REPLAYED = {"Idempotent-Replayed": {
    "description": "`true` when this is the stored response of an earlier request with the same Idempotency-Key.",
    "schema": {"type": "string", "enum": ["true"]},
}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
REQUEST_ID = {"X-Request-ID": {"description": "The request's id (also in problem bodies as `request_id`).",
                               **_STRING}}

_NOUNS = {"erasures": ("erasure",), "batches": ("batch",), "certificates": ("certificate",), "models": ("model",),
          "uploads": ("upload",), "schedules": ("schedule",), "webhooks": ("webhook",), "artifacts": ("artifact",),
          "audit": (), "health": ()}


def operation_id(route: APIRoute) -> str:
    """`resource_action`: the first tag, then the function name without the resource's noun."""
    resource = str(route.tags[0]) if route.tags else "default"
    nouns = {resource, *_NOUNS.get(resource, ())}
    words = [w for w in route.name.split("_") if w not in nouns]
    return f"{resource}_{'_'.join(words) or route.name}"


# ---- webhooks --------------------------------------------------------------------------------------------


def _webhook_router() -> APIRouter:
    router = APIRouter(tags=["webhook events"])
    headers_doc = (
        "Standard Webhooks headers: `webhook-signature` is `v1,` + base64 HMAC-SHA256, keyed with the base64-decoded "
        "part of the endpoint's secret after `whsec_`, over `{webhook-id}.{webhook-timestamp}.{raw body}`. "
        "Answer 2xx to acknowledge; anything else (or no answer) is retried with exponential backoff, with "
        "the same `webhook-id`."
    )
    for event_type, (model, when) in WEBHOOK_EVENTS.items():
        _add_webhook(router, event_type, model, when + " " + headers_doc)
    return router


def _add_webhook(router: APIRouter, event_type: str, model: type[BaseModel], description: str) -> None:
    def receive(
        body: model,  # type: ignore[valid-type]
        webhook_id: Annotated[str, Header(alias="webhook-id", description="Event id (`evt_...`), same on retries.")],
        webhook_timestamp: Annotated[int, Header(alias="webhook-timestamp", description="Unix seconds of sending.")],
        webhook_signature: Annotated[str, Header(alias="webhook-signature",
                                                 description="`v1,<base64>` (a space-separated list).")],
    ) -> None:
        """Documentation only: Lethe sends this request; it never receives it."""

    receive.__annotations__["body"] = model  # a runtime class, not a name the module could resolve
    router.add_api_route(
        event_type, receive, methods=["POST"], status_code=204, summary=f"`{event_type}`", description=description,
        operation_id=f"webhook_{event_type.replace('.', '_')}", responses={204: {"description": "Acknowledged."}},
    )


WEBHOOKS = _webhook_router()


# ---- the document ----------------------------------------------------------------------------------------


def _add_headers(schema: dict[str, Any]) -> None:
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            idempotent = any(p.get("name") == "Idempotency-Key" for p in op.get("parameters", []))
            for status, response in op.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers.update(REQUEST_ID)
                if status in ("429", "503"):
                    headers.update(RETRY_AFTER)
                if idempotent and str(status).startswith("2"):
                    headers.update(REPLAYED)


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes,
        webhooks=app.webhooks.routes, openapi_version=app.openapi_version,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    _add_headers(schema)
    for operations in schema.get("webhooks", {}).values():
        for op in operations.values():
            op["responses"].pop("422", None)  # FastAPI's request validation: not what a webhook receiver answers
    return schema
