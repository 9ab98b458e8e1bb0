"""Model validation jobs: recognize the registered folder (SD 1.x / 2.x / XL), fingerprint its weights and
mark the model `ready` (architecture, fingerprint) or `invalid` (reason) — audited, in one transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.config import Settings
from core.db import unit_of_work
from core.erasure import jobs
from core.erasure.lease_keeper import LeaseKeeper
from core.erasure.states import JobState
from core.registry.local_copy import local_model_dir
from core.registry.models import RegisteredModel
from core.spare.errors import UnsupportedModelError


def run_validation(held: jobs.Lease, settings: Settings, keeper: LeaseKeeper) -> str:
    from core.spare.loading import check_safetensors, detect_architecture, fingerprint

    with unit_of_work() as session:
        model = session.get(RegisteredModel, held.model_id)
        if model is None:
            raise UnsupportedModelError(f"model {held.model_id} no longer exists")
        source, tenant_id = model.source_uri, model.tenant_id
    keeper.progress("validate", 0.0)
    architecture = digest = reason = None
    model_dir = None
    try:
        model_dir = local_model_dir(source, settings, tenant_id=tenant_id)
        keeper.check()
        architecture = detect_architecture(model_dir)
        check_safetensors(model_dir)
        keeper.progress("validate", 0.3)
        digest = fingerprint(model_dir)
    except UnsupportedModelError as exc:
        reason = _public(str(exc), model_dir, settings)
    keeper.check()
    keeper.stop()

    def write(session: Any) -> str:
        model = session.get(RegisteredModel, held.model_id)
        state = jobs.complete(session, held, artifacts=[], metrics=None)
        if state != JobState.succeeded:
            return state.value
        from core.registry.service import record_validation

        record_validation(session, model, ok=reason is None, actor=held.actor,
                          architecture=architecture if reason is None else None,
                          fingerprint=digest if reason is None else None, reason=reason)
        payload = {"status": model.status.value, "architecture": model.architecture, "fingerprint": model.fingerprint,
                   "reason": model.status_reason}
        jobs.webhook_event(session, "model.validated", model.tenant_id, {"model_id": str(model.id), **payload})
        return state.value

    from core.erasure.execution import finish_attempt

    return finish_attempt(write)


def _public(reason: str, model_dir: Path | None, settings: Settings) -> str:
    """The reason as tenants may read it: the worker's own directories (a download cache, the data dir)
    are named by role, never by path."""
    if model_dir is not None:
        reason = reason.replace(str(model_dir), "the model folder")
    return reason.replace(str(settings.data_dir), "the data directory")
