"""Webhook endpoints of the caller's tenant (admin scope): register, list, read, delete, delivery log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from api.deps import SessionDep, SettingsDep, require
from api.errors import COMMON_ERRORS, problems
from api.idempotency import IdempotencyKey, idempotent
from api.openapi import LOCATION
from core.tenancy.schemas import Principal, Scope
from core.webhooks import service
from core.webhooks.models import WebhookEndpoint
from core.webhooks.schemas import DeliveryOut, WebhookCreate, WebhookCreated, WebhookList, WebhookOut

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=problems(*COMMON_ERRORS))
Admin = Annotated[Principal, Depends(require(Scope.admin))]


def _out(endpoint: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(id=endpoint.id, url=endpoint.url, events=endpoint.events, description=endpoint.description,
                      enabled=endpoint.enabled, created_at=endpoint.created_at)


@router.post(
    "", status_code=201, response_model=WebhookCreated, summary="Register a webhook endpoint.",
    responses={201: {"description": "Registered; the secret is shown only here.", "headers": LOCATION}},
    description="Events are POSTed with Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, "
    "`webhook-signature` = `v1,` + base64 HMAC-SHA256 over `id.timestamp.body`), retried with exponential "
    "backoff. Private, loopback and link-local targets are refused unless the server allows them. "
    "The signing secret is returned only in this first response (encrypted at rest on the server); a replay "
    "of it through the same Idempotency-Key answers `secret: null`.",
)
def create_webhook(request: Request, body: WebhookCreate, session: SessionDep, settings: SettingsDep,
                   principal: Admin, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    def work() -> WebhookCreated:
        endpoint = service.create(session, tenant_id=principal.tenant_id, actor=principal.actor, body=body,
                                  settings=settings)
        return WebhookCreated(**_out(endpoint).model_dump(), secret=endpoint.secret)

    return idempotent(request, session, principal, idempotency_key, body.model_dump(mode="json"), 201, work,
                      headers=lambda out: {"Location": f"/v1/webhooks/{out['id']}"},
                      stored=lambda out: {**out, "secret": None})


@router.get("", response_model=WebhookList, summary="List the tenant's webhook endpoints.")
def list_webhooks(session: SessionDep, principal: Admin) -> WebhookList:
    return WebhookList(items=[_out(e) for e in service.repository.list_endpoints(session, principal.tenant_id)])


@router.get("/{webhook_id}", response_model=WebhookOut, summary="One webhook endpoint.")
def get_webhook(webhook_id: uuid.UUID, session: SessionDep, principal: Admin) -> WebhookOut:
    return _out(service.get(session, principal.tenant_id, webhook_id))


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryOut],
            summary="Recent deliveries to this endpoint, each with its log of attempts.")
def list_deliveries(webhook_id: uuid.UUID, session: SessionDep, principal: Admin) -> list[DeliveryOut]:
    return service.delivery_log(session, principal.tenant_id, webhook_id)


@router.delete("/{webhook_id}", status_code=204, response_class=Response, summary="Delete a webhook endpoint.")
def delete_webhook(webhook_id: uuid.UUID, session: SessionDep, principal: Admin) -> Response:
    service.delete(session, tenant_id=principal.tenant_id, actor=principal.actor, endpoint_id=webhook_id)
    return Response(status_code=204)
