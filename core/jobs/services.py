"""Background services: small independent steps that keep "no job lost" true, and the sweep that runs them.

`lethe beat` (and the embedded runner's housekeeping thread) calls `sweep()` periodically; each enabled
service runs in its own transaction, so one failing service does not undo the others. Each is switched by
its own setting (`LETHE_SERVICE_<NAME>`, default on). The job runtime's own services are registered here:

- `lease_reaper`: running jobs whose lease expired (worker died) go back to `queued` (next lease: attempt+1);
- `outbox_relay`: publishes unsent outbox rows (doorbells, webhook events);
- `doorbells`: re-rings queued jobs without a live doorbell (never published, published long ago, or retried
  and now past their backoff) — lost broker messages come back this way.

Domains register theirs (`register_service`) in their `handlers` module: overdue flags (erasure), due
schedules, webhook retries, the audit checkpoint.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.config import Settings, get_settings
from core.db import unit_of_work
from core.jobs import lifecycle, repository
from core.jobs.models import Job
from core.jobs.states import JobState
from core.logging import get_logger
from core.outbox.relay import Publisher, register_topic, relay
from core.outbox.service import JOB_ENQUEUE
from core.timeutil import utcnow

log = get_logger(__name__)


# A service step: one transaction's work; returns counts for the sweep report (e.g. {"requeued": 2}).
Step = Callable[[Session, Publisher, Settings], dict[str, int]]


@dataclass(frozen=True)
class Service:
    name: str  # switched by Settings.service_<name>
    step: Step


_SERVICES: dict[str, Service] = {}


def register_service(name: str, step: Step) -> None:
    """Add a background service (its switch, `service_<name>`, must exist in core/config.py)."""
    if f"service_{name}" not in Settings.model_fields:
        raise ValueError(f"background service {name!r} has no switch: add Settings.service_{name}")
    _SERVICES[name] = Service(name, step)


def registered() -> list[str]:
    return list(_SERVICES)


def enabled(settings: Settings) -> list[Service]:
    return [s for s in _SERVICES.values() if getattr(settings, f"service_{s.name}")]


class SweepReport(Counter[str]):
    """Counts by what the services did (`report.published`, `report["requeued"]`; 0 when none)."""

    def __getattr__(self, name: str) -> int:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def as_dict(self) -> dict[str, int]:
        return dict(self)


def sweep(publisher: Publisher, settings: Settings | None = None) -> SweepReport:
    """One pass of every enabled service, each in its own transaction."""
    settings = settings or get_settings()
    report = SweepReport()
    for service in enabled(settings):
        try:
            with unit_of_work() as session:
                report.update(service.step(session, publisher, settings))
        except Exception as exc:
            report["errors"] += 1
            log.warning("background service failed", service=service.name,
                        error=f"{type(exc).__name__}: {exc}"[:300])
    return report


def ring_job(session: Session, publisher: Publisher, job_id: uuid.UUID, kind: str) -> None:
    """Publish a doorbell for a job and remember when (the doorbells service republishes stale ones)."""
    publisher.enqueue_job(job_id, kind)
    job = session.get(Job, job_id)
    if job is not None:
        job.enqueued_at = utcnow()


def _reap_leases(session: Session, publisher: Publisher, settings: Settings) -> dict[str, int]:
    out = lifecycle.requeue_expired(session)
    return {"requeued": sum(s == JobState.queued for _, s in out),
            "failed": sum(s != JobState.queued for _, s in out)}


def _ring_from_outbox(session: Session, publisher: Publisher, payload: dict[str, Any]) -> list[uuid.UUID]:
    ring_job(session, publisher, uuid.UUID(payload["job_id"]), payload.get("kind", ""))
    return []


def _relay(session: Session, publisher: Publisher, settings: Settings) -> dict[str, int]:
    return {"published": relay(session, publisher)}


def _rering(session: Session, publisher: Publisher, settings: Settings) -> dict[str, int]:
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.requeue_after_seconds)
    stale = repository.needing_doorbell(session, now, stale_before)
    never_rung = [j for j in stale if j.enqueued_at is None]
    old = [j for j in stale if j.enqueued_at is not None]
    # A doorbell that is merely old may still wait in the broker behind a long job. When the broker can
    # say how many messages wait, only re-ring as many old jobs as there are missing messages.
    depth = publisher.queue_depth() if hasattr(publisher, "queue_depth") else None
    if depth is not None and old:
        leasable = repository.count_leasable(session, now)
        missing = max(0, leasable - len(never_rung) - depth)
        old = old[:missing]
    rung = 0
    for job in never_rung + old:
        try:
            ring_job(session, publisher, job.id, job.kind.value)
        except Exception as exc:
            log.warning("doorbell failed; will retry next sweep", job_id=str(job.id), error=str(exc)[:200])
            break
        rung += 1
    return {"rerung": rung}


register_topic(JOB_ENQUEUE, _ring_from_outbox)
register_service("lease_reaper", _reap_leases)
register_service("outbox_relay", _relay)
register_service("doorbells", _rering)
