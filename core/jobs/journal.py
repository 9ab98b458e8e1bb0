"""Where the job runtime records what happened to a job (`job.attempt_started`, `job.attempt_finished`,
`artifact.stored`, `job.lease_expired`): the hash-chained audit log, plugged in by `core.audit.handlers`
(the job runtime imports no domain). Written in the caller's transaction, like every audit event."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from sqlalchemy.orm import Session


class Append(Protocol):
    def __call__(self, session: Session, *, action: str, subject: str, actor: str,
                 tenant_id: uuid.UUID | None, payload: dict[str, Any]) -> Any: ...


_append: list[Append] = []


def use(append: Append) -> None:
    _append[:] = [append]


def record(session: Session, *, action: str, job_id: uuid.UUID, actor: str, tenant_id: uuid.UUID,
           payload: dict[str, Any]) -> None:
    if not _append:
        raise LookupError("no audit journal for job events; the process must call core.wiring.load() at start")
    _append[0](session, action=action, subject=f"job:{job_id}", actor=actor, tenant_id=tenant_id, payload=payload)
