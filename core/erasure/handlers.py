"""What erasures add to the job runtime: the `erase` job kind's handler, and the `overdue` background service.

The handler's hooks keep the erasure request in step with its job (through `states.transition`): leased →
`running`, retried/released → `queued`, succeeded → `succeeded` with its certificate, failed → `failed`
with the reason and evidence, cancelled → `cancelled`; each with its audit event and webhook. A request
that fails or is cancelled takes the requests chained after it along (core.erasure.chain).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from core.audit.service import append
from core.config import Settings
from core.erasure import chain, execution, repository
from core.erasure.models import ErasureRequest
from core.erasure.states import TERMINAL, RequestStatus, transition
from core.jobs.handlers import Attempt, JobHandler, register
from core.jobs.lifecycle import SYSTEM_SWEEPER, Lease
from core.jobs.models import Artifact, Job
from core.jobs.services import register_service
from core.jobs.states import JobKind, JobState
from core.outbox.relay import Publisher
from core.outbox.service import webhook_event
from core.spare.errors import ErasureCancelled
from core.storage import get_store
from core.timeutil import utcnow


class EraseHandler(JobHandler):
    kind = JobKind.erase
    permanent = execution.PERMANENT
    stopped = (ErasureCancelled,)

    def run(self, attempt: Attempt) -> str:
        store = get_store(attempt.settings)
        uploaded: list[str] = []
        attempt.cleanups.append(lambda: execution.remove_objects(store, uploaded))
        erase_fn = attempt.options.get("erase_fn") or execution.default_erase()
        return execution.erase(attempt.held, attempt.settings, attempt.keeper, store, attempt.work, uploaded,
                               erase_fn)

    def reason(self, exc: BaseException) -> str:
        return execution.reason(exc)

    def admit(self, session: Session, job: Job) -> JobState | None:
        request = _request(session, job)
        if request is not None and request.status in TERMINAL:
            # Decided elsewhere (cancelled, rejected) while the job waited: it must not run.
            return JobState.cancelled if request.status == RequestStatus.cancelled else JobState.failed
        return None

    def started(self, session: Session, job: Job, held: Lease) -> None:
        request = _request(session, job)
        if request is not None:
            transition(request, RequestStatus.running, if_open=True)

    def succeeded(self, session: Session, job: Job, held: Lease, result: Any) -> None:
        request = _request(session, job)
        if request is None:
            return
        request.metrics = result
        request.error = None
        transition(request, RequestStatus.verifying, if_open=True)  # already there when the evaluator ran
        transition(request, RequestStatus.succeeded, if_open=True)
        artifacts = repository.artifacts_of_attempt(session, job.id, held.attempt)
        for hook in SUCCEEDED:
            hook(session, request, job, artifacts)
        append(session, action="erasure.succeeded", subject=f"erasure:{request.id}", actor=held.actor,
               tenant_id=job.tenant_id, payload={"job_id": str(job.id), "attempt": held.attempt})
        webhook_event(session, "erasure.succeeded", job.tenant_id,
                      {"request_id": str(request.id), "job_id": str(job.id), "status": "succeeded"})

    def requeued(self, session: Session, job: Job) -> None:
        request = _request(session, job)
        if request is not None:
            transition(request, RequestStatus.queued, if_open=True)

    def failed(self, session: Session, job: Job, actor: str, reason: str, evidence: Any) -> None:
        request = _request(session, job)
        if request is None:
            return
        request.error = reason
        if evidence is not None:
            request.metrics = evidence
        transition(request, RequestStatus.failed, if_open=True)
        append(session, action="erasure.failed", subject=f"erasure:{request.id}", actor=actor,
               tenant_id=job.tenant_id, payload={"job_id": str(job.id), "reason": reason})
        webhook_event(session, "erasure.failed", job.tenant_id,
                      {"request_id": str(request.id), "job_id": str(job.id), "status": "failed", "error": reason})
        chain.cancel_successors(session, request.id, f"failed: {reason}", actor=actor)

    def cancelled(self, session: Session, job: Job, actor: str) -> None:
        request = _request(session, job)
        if request is not None and transition(request, RequestStatus.cancelled, if_open=True):
            append(session, action="erasure.cancelled", subject=f"erasure:{request.id}", actor=actor,
                   tenant_id=job.tenant_id, payload={"job_id": str(job.id)})
            webhook_event(session, "erasure.cancelled", job.tenant_id,
                          {"request_id": str(request.id), "job_id": str(job.id), "status": "cancelled"})
            chain.cancel_successors(session, request.id, "was cancelled", actor=actor)


def _request(session: Session, job: Job) -> ErasureRequest | None:
    return repository.lock_request(session, job.request_id) if job.request_id is not None else None


# Called inside the success transaction, after the request moved to `succeeded` (session, request, job,
# artifacts): the certificates domain registers its issuer here (core.certificates.handlers).
SUCCEEDED: list[Callable[[Session, ErasureRequest, Job, list[Artifact]], None]] = []


def _overdue(session: Session, publisher: Publisher, settings: Settings) -> dict[str, int]:
    """Flag open requests past their `due_at` (audited, webhook `erasure.overdue`)."""
    flagged = repository.overdue_requests(session, utcnow())
    for request in flagged:
        request.overdue = True
        due = request.due_at.isoformat() if request.due_at else None
        append(session, action="erasure.overdue", subject=f"erasure:{request.id}", actor=SYSTEM_SWEEPER,
               tenant_id=request.tenant_id, payload={"due_at": due, "status": request.status.value})
        webhook_event(session, "erasure.overdue", request.tenant_id,
                      {"request_id": str(request.id), "status": request.status.value, "due_at": due})
    return {"overdue": len(flagged)}


register(EraseHandler())
register_service("overdue", _overdue)
