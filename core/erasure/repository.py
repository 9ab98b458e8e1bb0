"""Queries on erasure_requests, jobs and artifacts (tenant-scoped wherever a caller is a tenant)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Insert,
    Select,
    String,
    Table,
    Uuid,
    and_,
    bindparam,
    column,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
)
from sqlalchemy import table as sa_table
from sqlalchemy.orm import Session

from core.db import for_update
from core.erasure.models import ErasureRequest
from core.erasure.states import TERMINAL, RequestStatus
from core.jobs.models import Artifact, Job
from core.jobs.states import JobKind, JobState
from core.outbox.models import OutboxMessage

_requests = ErasureRequest.__table__
_jobs = Job.__table__
_outbox = OutboxMessage.__table__


def _sql_constant(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"no inline SQL for default {value!r}")


@lru_cache(maxsize=16)
def _fresh_insert(table: Table, given: tuple[str, ...], prefix: str) -> Insert:
    """INSERT of a new row, built once per (table, given columns): the given columns are bound as
    `<prefix><name>`; the others take their model's scalar default (inline) or NULL (SQL NULL, as when the
    ORM omits them). Few bound parameters keep psycopg's query cache working (it skips queries with > 50)."""
    values: dict[str, Any] = {}
    for col in table.c:
        if col.name in given:
            values[col.name] = bindparam(prefix + col.name)  # typed from the column at compile time
        elif col.default is not None and getattr(col.default, "is_scalar", False):
            values[col.name] = literal_column(_sql_constant(col.default.arg))  # type: ignore[attr-defined]
        elif col.default is not None and not col.primary_key:
            raise ValueError(f"{table.name}.{col.name} has a computed default: give it")
        elif not col.primary_key or col.name in given:
            values[col.name] = null()
    return insert(table).values(values)


def _params(prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in row.items()}


def insert_submission(
    session: Session, request: dict[str, Any], job: dict[str, Any] | None, doorbell: dict[str, Any] | None
) -> None:
    """Write a new request, its job and the job's outbox doorbell (Core). On Postgres: one statement
    (data-modifying CTEs), one round trip; elsewhere one INSERT each. Columns a dict leaves out take
    their default or NULL (see `_fresh_insert`)."""
    insert_request = _fresh_insert(_requests, tuple(sorted(request)), "r_")
    if job is None or doorbell is None:
        session.execute(insert_request, _params("r_", request))
        return
    insert_job = _fresh_insert(_jobs, tuple(sorted(job)), "j_")
    insert_doorbell = _fresh_insert(_outbox, tuple(sorted(doorbell)), "o_")
    params = {**_params("r_", request), **_params("j_", job), **_params("o_", doorbell)}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_submission_cte(insert_request, insert_job, insert_doorbell), params)
        return
    session.execute(insert_request, _params("r_", request))
    session.execute(insert_job, _params("j_", job))
    session.execute(insert_doorbell, _params("o_", doorbell))


@lru_cache(maxsize=8)
def _submission_cte(insert_request: Insert, insert_job: Insert, insert_doorbell: Insert) -> Insert:
    return insert_doorbell.add_cte(insert_request.cte("new_request"), insert_job.cte("new_job"))


def get_request(session: Session, tenant_id: uuid.UUID, request_id: uuid.UUID, *, lock: bool = False) -> (
    ErasureRequest | None
):
    stmt = select(ErasureRequest).where(ErasureRequest.id == request_id, ErasureRequest.tenant_id == tenant_id)
    if lock:
        stmt = for_update(session, stmt)
    return session.scalars(stmt).first()


def list_requests(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    status: RequestStatus | None = None,
    model_id: uuid.UUID | None = None,
    label: str | None = None,
    due_before: datetime | None = None,
    external_reference: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[ErasureRequest]:
    """Newest first, keyset-paginated on (created_at, id): stable while new requests arrive."""
    stmt: Select[tuple[ErasureRequest]] = select(ErasureRequest).where(ErasureRequest.tenant_id == tenant_id)
    if status is not None:
        stmt = stmt.where(ErasureRequest.status == status)
    if model_id is not None:
        stmt = stmt.where(ErasureRequest.model_id == model_id)
    if due_before is not None:
        stmt = stmt.where(ErasureRequest.due_at.is_not(None), ErasureRequest.due_at < due_before)
    if after is not None:
        created, rid = after
        stmt = stmt.where(
            or_(ErasureRequest.created_at < created, and_(ErasureRequest.created_at == created,
                                                          ErasureRequest.id < rid))
        )
    stmt = stmt.order_by(ErasureRequest.created_at.desc(), ErasureRequest.id.desc())
    if label is None and external_reference is None:
        return list(session.scalars(stmt.limit(limit)))

    # Labels and the legal block are JSON; filtering in Python keeps one query path for SQLite and Postgres.
    def wanted(r: ErasureRequest) -> bool:
        if label is not None and label not in (r.labels or []):
            return False
        reference = (r.legal or {}).get("external_reference") or ""
        return external_reference is None or external_reference.casefold() in str(reference).casefold()

    out: list[ErasureRequest] = []
    chunk = max(limit * 4, 100)
    while len(out) < limit:
        rows = list(session.scalars(stmt.limit(chunk)))
        out.extend(r for r in rows if wanted(r))
        if len(rows) < chunk:
            break
        last = rows[-1]
        stmt = stmt.where(
            or_(ErasureRequest.created_at < last.created_at,
                and_(ErasureRequest.created_at == last.created_at, ErasureRequest.id < last.id))
        )
    return out[:limit]


def jobs_of_request(session: Session, request_id: uuid.UUID, *, lock: bool = False) -> list[Job]:
    stmt = select(Job).where(Job.request_id == request_id).order_by(Job.created_at)
    if lock:
        stmt = for_update(session, stmt)
    return list(session.scalars(stmt))


def latest_jobs(session: Session, request_ids: list[uuid.UUID]) -> dict[uuid.UUID, Job]:
    if not request_ids:
        return {}
    rows = session.scalars(select(Job).where(Job.request_id.in_(request_ids)).order_by(Job.created_at))
    return {job.request_id: job for job in rows if job.request_id is not None}


def artifacts_of_attempt(session: Session, job_id: uuid.UUID, attempt: int) -> list[Artifact]:
    return list(
        session.scalars(
            select(Artifact).where(Artifact.job_id == job_id, Artifact.attempt == attempt).order_by(Artifact.name)
        )
    )


@dataclass(frozen=True)
class QueueStats:
    jobs_by_kind_state: dict[tuple[str, str], int]
    queued_by_kind: dict[str, int]
    outbox_pending: int
    # Open requests past their due date (whether or not the sweeper has flagged them yet).
    overdue_requests: int = 0
    # Running jobs whose lease ran out: their worker is gone and no sweeper has requeued them.
    expired_leases: int = 0


def queue_stats(session: Session, now: datetime) -> QueueStats:
    by_state: dict[tuple[str, str], int] = {(k.value, s.value): 0 for k in JobKind for s in JobState}
    for kind, state, count in session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)):
        by_state[(JobKind(kind).value, JobState(state).value)] = int(count)
    queued = {k: n for (k, s), n in by_state.items() if s == JobState.queued.value}
    pending = session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
    )
    overdue = session.scalar(
        select(func.count()).select_from(ErasureRequest).where(
            ErasureRequest.due_at < now, ErasureRequest.status.not_in(list(TERMINAL))
        )
    )
    expired = session.scalar(
        select(func.count()).select_from(Job).where(Job.state == JobState.running, Job.lease_expires_at < now)
    )
    return QueueStats(by_state, queued, int(pending or 0), int(overdue or 0), int(expired or 0))

def lock_request(session: Session, request_id: uuid.UUID) -> ErasureRequest | None:
    """The request row, locked, whatever its tenant: for the worker side, which holds its job."""
    return session.scalars(for_update(session, select(ErasureRequest).where(ErasureRequest.id == request_id))).first()


def successors(session: Session, request_id: uuid.UUID) -> list[ErasureRequest]:
    """The requests chained after this one (core.erasure.chain), locked, oldest first."""
    stmt = (select(ErasureRequest).where(ErasureRequest.after_request_id == request_id)
            .order_by(ErasureRequest.created_at, ErasureRequest.id))
    return list(session.scalars(for_update(session, stmt)))


def overdue_requests(session: Session, now: datetime, limit: int = 500) -> list[ErasureRequest]:
    """Open requests past their due date that are not flagged yet (rows other sweepers hold are skipped)."""
    stmt = (
        select(ErasureRequest)
        .where(
            ErasureRequest.due_at.is_not(None),
            ErasureRequest.due_at < now,
            ErasureRequest.overdue.is_(False),
            ErasureRequest.status.not_in(list(TERMINAL)),
        )
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


# The schedules table by name, one column read: importing the schedules domain would close the cycle
# schedules → batches → erasure (tests/unit/test_import_graph.py).
_schedules = sa_table("schedules", column("id", Uuid()), column("created_by", String()))


def schedule_creator(session: Session, schedule_id: uuid.UUID) -> str | None:
    """Who created the schedule that submitted a request (the actor string), if it still exists."""
    return session.scalars(select(_schedules.c.created_by).where(_schedules.c.id == schedule_id)).first()
