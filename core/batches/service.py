"""Submit a batch's erasure requests under a shared batch id — per selected model one combined request, or a
chain of one request per concept (core.erasure.chain) — and aggregate their status."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit.service import append
from core.batches.models import Batch
from core.batches.schemas import BatchCreate, BatchOut, BatchRequestOut, ModelSelector
from core.erasure import service as erasure_service
from core.erasure.models import ErasureRequest
from core.erasure.states import TERMINAL, RequestStatus
from core.errors import NotFound, ValidationFailed, found
from core.registry.models import ModelStatus, RegisteredModel
from core.tenancy.schemas import Principal


def select_models(session: Session, tenant_id: uuid.UUID, selector: ModelSelector) -> list[uuid.UUID]:
    if selector.ids is not None:
        found = set(session.scalars(select(RegisteredModel.id).where(
            RegisteredModel.tenant_id == tenant_id, RegisteredModel.id.in_(selector.ids))))
        missing = [str(i) for i in selector.ids if i not in found]
        if missing:
            raise NotFound(f"models not found: {', '.join(missing)}", missing=missing)
        return list(dict.fromkeys(selector.ids))
    rows = session.scalars(
        select(RegisteredModel).where(RegisteredModel.tenant_id == tenant_id,
                                      RegisteredModel.status == ModelStatus.ready)
        .order_by(RegisteredModel.created_at, RegisteredModel.id)
    )
    return [m.id for m in rows if selector.all_ready or (selector.tag in (m.tags or []))]


def submit(session: Session, principal: Principal, body: BatchCreate, *,
           schedule_id: uuid.UUID | None = None) -> Batch:
    """Validate every model first, then write the batch and its requests in the caller's transaction.

    `combined: false`: per model, the first request runs on the head and each later one is chained after the
    one before it (it runs on the version that one makes); every request of a chain is applied on success."""
    model_ids = select_models(session, principal.tenant_id, body.models)
    if not model_ids:
        raise ValidationFailed("no ready model matches the selector; nothing to erase")
    bodies = {model_id: body.per_model(model_id) for model_id in model_ids}
    batch = Batch(tenant_id=principal.tenant_id, schedule_id=schedule_id, combined=body.combined,
                  size=sum(len(b) for b in bodies.values()), created_by=principal.actor)
    session.add(batch)
    session.flush()
    for model_bodies in bodies.values():
        before: uuid.UUID | None = None
        for one in model_bodies:
            submitted = erasure_service.submit(session, principal, one, batch_id=batch.id, schedule_id=schedule_id,
                                               after_request_id=before, apply_on_success=not body.combined)
            before = submitted.request["id"]
    append(session, action="batch.submitted", subject=f"batch:{batch.id}", actor=principal.actor,
           tenant_id=principal.tenant_id,
           payload={"models": [str(m) for m in model_ids], "schedule_id": str(schedule_id) if schedule_id else None,
                    "combined": body.combined, "requests": batch.size})
    return batch


def aggregate(statuses: list[RequestStatus]) -> str:
    if any(s not in TERMINAL for s in statuses):
        return "in_progress"
    kinds = set(statuses)
    if kinds == {RequestStatus.succeeded}:
        return "succeeded"
    if RequestStatus.succeeded in kinds:
        return "partial"
    if kinds <= {RequestStatus.cancelled}:
        return "cancelled"
    return "failed"


def get(session: Session, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> BatchOut:
    batch = found(session.scalars(select(Batch).where(Batch.id == batch_id, Batch.tenant_id == tenant_id)).first(),
                  f"batch {batch_id}")
    requests = in_chain_order(list(session.scalars(
        select(ErasureRequest).where(ErasureRequest.batch_id == batch.id, ErasureRequest.tenant_id == tenant_id)
        .order_by(ErasureRequest.created_at, ErasureRequest.id)
    )))
    statuses = [r.status for r in requests]
    return BatchOut(
        id=batch.id, schedule_id=batch.schedule_id, created_at=batch.created_at, size=batch.size,
        combined=batch.combined, status=aggregate(statuses), counts=dict(Counter(s.value for s in statuses)),
        requests=[BatchRequestOut(id=r.id, model_id=r.model_id, status=r.status, error=r.error,
                                  targets=[c["target"] for c in r.concepts], model_version=r.model_version,
                                  after_request_id=r.after_request_id) for r in requests],
    )


def in_chain_order(requests: list[ErasureRequest]) -> list[ErasureRequest]:
    """Oldest first, each chain's requests in the order they run (rows written in one transaction may
    share a timestamp)."""
    after: dict[uuid.UUID, list[ErasureRequest]] = {}
    ids = {r.id for r in requests}
    for r in requests:
        if r.after_request_id in ids:
            after.setdefault(r.after_request_id, []).append(r)  # type: ignore[arg-type]
    out: list[ErasureRequest] = []
    todo = [r for r in requests if r.after_request_id not in ids]
    while todo:
        r = todo.pop(0)
        out.append(r)
        todo[:0] = after.get(r.id, [])
    return out
