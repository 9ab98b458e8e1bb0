"""Schedules: create/list/delete, and `run_due` — the sweeper's step that runs each due slot exactly once.

Exactly once per slot: the due schedule row is locked (SKIP LOCKED on Postgres) and the run is recorded
under a unique (schedule_id, slot_at) key inside a savepoint, so concurrent sweepers cannot both run it.
After downtime only the latest missed slot runs (once), then the schedule moves to its next future slot.

A run submits as the API key that created the schedule: its requests carry that key as `submitted_by`, so
under four eyes the same key cannot approve them. A schedule whose key is revoked (or gone) is paused —
`enabled` false, audited as `schedule.paused` — at revocation and, failing that, at its next due slot.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit.service import append
from core.batches import service as batches
from core.batches.schemas import BatchCreate
from core.errors import LetheError, found
from core.logging import get_logger
from core.outbox.service import webhook_event
from core.schedules.models import Schedule, ScheduleRun
from core.schedules.schemas import ScheduleCreate, ScheduleOut
from core.tenancy.models import ApiKey, Tenant
from core.tenancy.schemas import Principal, Scope
from core.timeutil import as_utc, utcnow

log = get_logger(__name__)
SCHEDULER = "system:scheduler"


def next_slot(cron: str, tz: str, after: datetime) -> datetime:
    local = as_utc(after).astimezone(ZoneInfo(tz))
    return as_utc(croniter(cron, local).get_next(datetime))


def latest_slot(cron: str, tz: str, at_or_before: datetime) -> datetime:
    local = (as_utc(at_or_before) + timedelta(microseconds=1)).astimezone(ZoneInfo(tz))
    return as_utc(croniter(cron, local).get_prev(datetime))


def to_out(schedule: Schedule) -> ScheduleOut:
    return ScheduleOut(id=schedule.id, name=schedule.name, cron=schedule.cron, timezone=schedule.timezone,
                       template=schedule.template, enabled=schedule.enabled, next_run_at=schedule.next_run_at,
                       last_run_at=schedule.last_run_at, created_at=schedule.created_at)


def create(session: Session, principal: Principal, body: ScheduleCreate) -> Schedule:
    # Explicit model ids must exist now (a tag or all_ready is resolved at each run).
    batches.select_models(session, principal.tenant_id, body.template.models)
    schedule = Schedule(
        tenant_id=principal.tenant_id, name=body.name, cron=body.cron, timezone=body.timezone,
        template=body.template.model_dump(mode="json", exclude_unset=True), enabled=body.enabled,
        next_run_at=next_slot(body.cron, body.timezone, utcnow()), created_by=principal.actor,
    )
    session.add(schedule)
    session.flush()
    append(session, action="schedule.created", subject=f"schedule:{schedule.id}", actor=principal.actor,
           tenant_id=principal.tenant_id, payload={"cron": schedule.cron, "timezone": schedule.timezone})
    return schedule


def _live(session: Session, tenant_id: uuid.UUID):  # type: ignore[no-untyped-def]
    return select(Schedule).where(Schedule.tenant_id == tenant_id, Schedule.deleted_at.is_(None))


def get(session: Session, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> Schedule:
    return found(session.scalars(_live(session, tenant_id).where(Schedule.id == schedule_id)).first(),
                 f"schedule {schedule_id}")


def list_all(session: Session, tenant_id: uuid.UUID) -> list[Schedule]:
    return list(session.scalars(_live(session, tenant_id).order_by(Schedule.created_at, Schedule.id)))


def delete(session: Session, principal: Principal, schedule_id: uuid.UUID) -> None:
    schedule = get(session, principal.tenant_id, schedule_id)
    schedule.deleted_at = utcnow()
    schedule.enabled = False
    append(session, action="schedule.deleted", subject=f"schedule:{schedule.id}", actor=principal.actor,
           tenant_id=principal.tenant_id, payload={})


def creator_key(session: Session, schedule: Schedule) -> ApiKey | None:
    """The API key that created the schedule (None if it no longer exists or is not a key of the tenant)."""
    kind, _, ident = schedule.created_by.partition(":")
    try:
        key_id = uuid.UUID(ident) if kind == "key" else None
    except ValueError:
        key_id = None
    key = session.get(ApiKey, key_id) if key_id else None
    return key if key is not None and key.tenant_id == schedule.tenant_id else None


def pause(session: Session, schedule: Schedule, *, reason: str, actor: str) -> None:
    """Disable a schedule that may no longer submit (audited)."""
    schedule.enabled = False
    append(session, action="schedule.paused", subject=f"schedule:{schedule.id}", actor=actor,
           tenant_id=schedule.tenant_id, payload={"reason": reason, "created_by": schedule.created_by})
    log.warning("schedule paused", schedule_id=str(schedule.id), reason=reason)


def pause_created_by(session: Session, creator: str, *, reason: str, actor: str) -> int:
    """Pause every live, enabled schedule the given actor created (e.g. when its key is revoked)."""
    rows = list(session.scalars(select(Schedule).where(
        Schedule.created_by == creator, Schedule.enabled.is_(True), Schedule.deleted_at.is_(None))))
    for schedule in rows:
        pause(session, schedule, reason=reason, actor=actor)
    return len(rows)


def _submitter(session: Session, schedule: Schedule, tenant: Tenant) -> Principal | str:
    """The principal a run submits as — the key that created the schedule, so four eyes applies to its
    requests as to any the key submits itself — or why the schedule may not submit any more."""
    key = creator_key(session, schedule)
    if key is None:
        return "the API key that created the schedule no longer exists"
    if key.revoked_at is not None:
        return "the API key that created the schedule was revoked"
    principal = Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=key.id, key_prefix=key.prefix,
                          scopes=frozenset(key.scopes), require_approval=tenant.require_approval)
    if not principal.has(Scope.erasures_write):
        return "the API key that created the schedule may not submit erasures"
    return principal


def _due(session: Session, now: datetime, limit: int) -> list[Schedule]:
    stmt = (
        select(Schedule)
        .where(Schedule.enabled.is_(True), Schedule.deleted_at.is_(None), Schedule.next_run_at <= now)
        .order_by(Schedule.next_run_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def run_due(session: Session, *, now: datetime | None = None, limit: int = 50) -> int:
    """Run every due schedule's latest slot once. Returns how many slots ran. Never commits."""
    now = now or utcnow()
    ran = 0
    for schedule in _due(session, now, limit):
        tenant = session.get(Tenant, schedule.tenant_id)
        assert tenant is not None
        principal = _submitter(session, schedule, tenant)
        if isinstance(principal, str):
            pause(session, schedule, reason=principal, actor=SCHEDULER)
            continue
        slot = latest_slot(schedule.cron, schedule.timezone, now)
        schedule.next_run_at = next_slot(schedule.cron, schedule.timezone, now)
        schedule.last_run_at = slot
        try:
            with session.begin_nested():
                run = ScheduleRun(schedule_id=schedule.id, slot_at=slot)
                session.add(run)
                session.flush()
        except IntegrityError:
            continue  # another sweeper ran this slot
        try:
            with session.begin_nested():
                batch = batches.submit(session, principal, BatchCreate.model_validate(schedule.template),
                                       schedule_id=schedule.id)
            run.batch_id, run.requests = batch.id, batch.size
        except (LetheError, ValueError) as exc:
            run.error = str(getattr(exc, "detail", exc))[:2000]
            log.warning("scheduled run submitted nothing", schedule_id=str(schedule.id), error=run.error)
        summary = {"slot_at": slot.isoformat(), "batch_id": str(run.batch_id) if run.batch_id else None,
                   "requests": run.requests, "error": run.error}
        append(session, action="schedule.ran", subject=f"schedule:{schedule.id}", actor=f"schedule:{schedule.id}",
               tenant_id=tenant.id, payload=summary)
        webhook_event(session, "schedule.ran", tenant.id, {"schedule_id": str(schedule.id), **summary})
        ran += 1
    return ran
