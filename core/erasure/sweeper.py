"""The sweeper: one pass of housekeeping that keeps "no job lost" true. `lethe beat` runs it periodically.

1. returns `running` jobs whose lease expired (worker died) to `queued` — the next lease is attempt+1;
2. publishes unsent outbox rows (doorbells, webhook events);
3. re-rings queued jobs that have no live doorbell (never published, published long ago, or retried and
   now past their backoff) — lost broker messages come back this way;
4. flags requests past their `due_at` (audited, webhook `erasure.overdue`);
5. runs due schedules and due webhook retries;
6. verifies the audit events appended since the last checkpoint and signs the chain's head.
Each step is its own transaction, so one failing step does not undo the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from core.audit import service as audit_service
from core.audit.service import append
from core.config import Settings, get_settings
from core.db import unit_of_work
from core.erasure import job_repository, jobs
from core.logging import get_logger
from core.outbox.relay import Publisher, relay
from core.timeutil import utcnow

log = get_logger(__name__)


@dataclass
class SweepReport:
    requeued: int = 0
    failed: int = 0
    published: int = 0
    rerung: int = 0
    overdue: int = 0
    schedule_runs: int = 0
    webhook_retries: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def sweep(publisher: Publisher, settings: Settings | None = None) -> SweepReport:
    settings = settings or get_settings()
    report = SweepReport()
    steps: list[tuple[str, Any]] = [
        ("expired leases", lambda s: _expired(s, report)),
        ("outbox", lambda s: setattr(report, "published", relay(s, publisher))),
        ("doorbells", lambda s: _rering(s, publisher, settings, report)),
        ("overdue", lambda s: _overdue(s, report)),
        ("schedules", lambda s: _schedules(s, report)),
        ("webhook retries", lambda s: _webhook_retries(s, publisher, report)),
        ("audit checkpoint", lambda s: _audit_checkpoint(s, settings)),
    ]
    for name, step in steps:
        try:
            with unit_of_work() as session:
                step(session)
        except Exception as exc:
            report.errors += 1
            log.warning("sweep step failed", step=name, error=f"{type(exc).__name__}: {exc}"[:300])
    return report


def _audit_checkpoint(session: Any, settings: Settings) -> None:
    """Verify the audit events appended since the last checkpoint and sign the new head, so that deleting the
    newest events is detectable within one sweep interval."""
    report = audit_service.verify(session, settings)
    if not report.ok:
        log.error("audit chain broken", problem=report.problem, first_broken_seq=report.first_broken_seq)


def _expired(session: Any, report: SweepReport) -> None:
    for _job_id, state in jobs.requeue_expired(session):
        if state.value == "queued":
            report.requeued += 1
        else:
            report.failed += 1


def _rering(session: Any, publisher: Publisher, settings: Settings, report: SweepReport) -> None:
    from core.outbox.relay import ring_job

    now = utcnow()
    stale_before = now - timedelta(seconds=settings.requeue_after_seconds)
    stale = job_repository.needing_doorbell(session, now, stale_before)
    never_rung = [j for j in stale if j.enqueued_at is None]
    old = [j for j in stale if j.enqueued_at is not None]
    # A doorbell that is merely old may still wait in the broker behind a long job. When the broker can
    # say how many messages wait, only re-ring as many old jobs as there are missing messages.
    depth = publisher.queue_depth() if hasattr(publisher, "queue_depth") else None
    if depth is not None and old:
        leasable = job_repository.count_leasable(session, now)
        missing = max(0, leasable - len(never_rung) - depth)
        old = old[:missing]
    for job in never_rung + old:
        try:
            ring_job(session, publisher, job.id, job.kind.value)
        except Exception as exc:
            log.warning("doorbell failed; will retry next sweep", job_id=str(job.id), error=str(exc)[:200])
            return
        report.rerung += 1


def _overdue(session: Any, report: SweepReport) -> None:
    for request in job_repository.overdue_requests(session, utcnow()):
        request.overdue = True
        append(session, action="erasure.overdue", subject=f"erasure:{request.id}", actor=jobs.SYSTEM_SWEEPER,
               tenant_id=request.tenant_id,
               payload={"due_at": request.due_at.isoformat() if request.due_at else None,
                        "status": request.status.value})
        jobs.webhook_event(session, "erasure.overdue", request.tenant_id,
                           {"request_id": str(request.id), "status": request.status.value,
                            "due_at": request.due_at.isoformat() if request.due_at else None})
        report.overdue += 1


def _schedules(session: Any, report: SweepReport) -> None:
    from core.schedules.service import run_due

    report.schedule_runs += run_due(session, now=utcnow())


def _webhook_retries(session: Any, publisher: Publisher, report: SweepReport) -> None:
    from core.webhooks.service import due_retries

    for delivery_id in due_retries(session, utcnow()):
        publisher.deliver_webhook(delivery_id)
        report.webhook_retries += 1
