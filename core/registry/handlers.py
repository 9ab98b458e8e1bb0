"""What the registry adds to the job runtime: the `validate_model` job kind (a light job, `default` lane).

Validation recognizes the registered folder (SD 1.x / 2.x / XL), fingerprints its weights and marks the model
`ready` (architecture, fingerprint) or `invalid` (reason) — audited, in one transaction. It needs no torch:
default-lane workers run in the API image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.config import Settings
from core.db import unit_of_work
from core.jobs.handlers import Attempt, JobHandler, register
from core.jobs.lifecycle import complete
from core.jobs.runner import finish_attempt
from core.jobs.states import JobKind, JobState
from core.outbox.service import webhook_event
from core.pipeline_folder import UnsupportedModelError, check_safetensors, detect_architecture, fingerprint
from core.registry.local_copy import local_model_dir
from core.registry.models import RegisteredModel
from core.registry.service import record_validation


class ValidateModelHandler(JobHandler):
    kind = JobKind.validate_model

    def run(self, attempt: Attempt) -> str:
        held, settings, keeper = attempt.held, attempt.settings, attempt.keeper
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

        def write(session: Session) -> str:
            model = session.get(RegisteredModel, held.model_id)
            state = complete(session, held, artifacts=[])
            if state != JobState.succeeded:
                return state.value
            ok = reason is None
            record_validation(session, model, ok=ok, actor=held.actor, architecture=architecture if ok else None,
                              fingerprint=digest if ok else None, reason=reason)
            payload: dict[str, Any] = {"status": model.status.value, "architecture": model.architecture,
                                       "fingerprint": model.fingerprint, "reason": model.status_reason}
            webhook_event(session, "model.validated", model.tenant_id, {"model_id": str(model.id), **payload})
            return state.value

        return finish_attempt(write)


def _public(reason: str, model_dir: Path | None, settings: Settings) -> str:
    """The reason as tenants may read it: the worker's own directories (a download cache, the data dir)
    are named by role, never by path."""
    if model_dir is not None:
        reason = reason.replace(str(model_dir), "the model folder")
    return reason.replace(str(settings.data_dir), "the data directory")


register(ValidateModelHandler())
