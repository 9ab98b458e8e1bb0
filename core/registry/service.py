"""Model registration (audited, queues a validation job) and recording validation outcomes. Never commits."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core.audit import service as audit
from core.config import Settings
from core.errors import Conflict, NotFound, found
from core.jobs.lifecycle import create_job
from core.jobs.states import JobKind
from core.pagination import keyset_cursor, parse_keyset
from core.registry import repository
from core.registry.models import ModelStatus, RegisteredModel
from core.registry.schemas import ModelCreate
from core.registry.sources import validate_source_uri
from core.tenancy.schemas import Principal
from core.timeutil import utcnow


class ModelNameTaken(Conflict):
    kind = "model-name-taken"
    title = "A model with this name exists"


def register(session: Session, settings: Settings, principal: Principal, body: ModelCreate) -> RegisteredModel:
    source = validate_source_uri(body.source_uri, settings, tenant_id=principal.tenant_id)
    if repository.by_name(session, principal.tenant_id, body.name) is not None:
        raise ModelNameTaken(f"a model named {body.name!r} is already registered", name=body.name)
    model = RegisteredModel(
        tenant_id=principal.tenant_id,
        name=body.name,
        source_uri=source,
        description=body.description,
        tags=list(dict.fromkeys(body.tags)),
        status=ModelStatus.pending,
        head_version=1,
        auto_apply=body.auto_apply,
    )
    session.add(model)
    session.flush()
    job = create_job(session, tenant_id=principal.tenant_id, kind=JobKind.validate_model, model_id=model.id)
    audit.append(
        session, action="model.registered", subject=f"model:{model.id}", actor=principal.actor,
        tenant_id=principal.tenant_id,
        payload={"name": model.name, "source_uri": source, "validation_job_id": str(job.id),
                 "auto_apply": model.auto_apply},
    )
    return model


def get(session: Session, principal: Principal, model_id: uuid.UUID) -> RegisteredModel:
    return found(repository.get(session, principal.tenant_id, model_id), f"model {model_id}")


def list_page(
    session: Session, principal: Principal, *, limit: int, cursor: str | None, status: ModelStatus | None
) -> tuple[list[RegisteredModel], str | None]:
    after = parse_keyset(cursor)
    rows = repository.list_models(session, principal.tenant_id, limit=limit + 1, status=status, after=after)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = keyset_cursor(last.created_at, last.id)
    return rows, next_cursor


def record_validation(
    session: Session,
    model: RegisteredModel,
    *,
    ok: bool,
    actor: str,
    architecture: str | None = None,
    fingerprint: str | None = None,
    reason: str | None = None,
) -> None:
    """The validation job's outcome: pending → ready (architecture + fingerprint) or invalid (reason)."""
    model.status = ModelStatus.ready if ok else ModelStatus.invalid
    model.architecture = architecture
    model.fingerprint = fingerprint
    model.status_reason = None if ok else (reason or "validation failed")
    model.validated_at = utcnow()
    audit.append(
        session, action="model.validated", subject=f"model:{model.id}", actor=actor, tenant_id=model.tenant_id,
        payload={"status": model.status.value, "architecture": architecture, "fingerprint": fingerprint,
                 "reason": model.status_reason},
    )


def set_auto_apply(session: Session, principal: Principal, model_id: uuid.UUID, value: bool) -> RegisteredModel:
    """The model's `auto_apply` setting (audited): succeeded erasures on the head become its next version."""
    model = repository.lock(session, principal.tenant_id, model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found")
    if model.auto_apply != value:
        model.auto_apply = value
        audit.append(session, action="model.settings_changed", subject=f"model:{model.id}", actor=principal.actor,
                     tenant_id=model.tenant_id, payload={"auto_apply": value})
    return model
