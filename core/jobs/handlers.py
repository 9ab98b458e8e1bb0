"""The registry of job kinds: which handler runs a kind, and what its outcomes mean to the kind's domain.

A domain adds a job kind in three steps (docs/conventions.md, "Adding a job kind"):
1. the kind in `core.jobs.states.JobKind` and its lane in `LANES` (+ a migration widening the CHECK);
2. a `JobHandler` subclass in `core/<domain>/handlers.py`, registered there with `register(...)`;
3. that module imported by `core.wiring.load()` (what every worker, sweeper and the embedded runner call).

Hooks run inside the job runtime's transaction (they never commit); `run` does the work of one attempt and
finishes it through `core.jobs.lifecycle.complete` (or raises: the runner records the failure).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.orm import Session

from core.config import Settings
from core.errors import LetheError
from core.jobs.states import JobKind, JobState

if TYPE_CHECKING:
    from core.jobs.keeper import LeaseKeeper
    from core.jobs.lifecycle import Lease
    from core.jobs.models import Job


@dataclass
class Attempt:
    """One attempt as its handler sees it: the lease, the keeper (progress, stop checks), a private work
    folder (removed afterwards) and clean-ups to run when the attempt does not succeed."""

    held: Lease
    settings: Settings
    keeper: LeaseKeeper
    options: dict[str, Any] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def work(self) -> Path:
        return self.settings.data_dir / "work" / f"{self.held.job_id}-attempt-{self.held.attempt}"

    def clean_up(self) -> None:
        while self.cleanups:
            self.cleanups.pop()()

    def remove_work(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


class JobHandler:
    """Subclass per job kind. Every hook has a do-nothing default."""

    kind: ClassVar[JobKind]
    # Errors another attempt cannot fix: the job fails at once with the message.
    permanent: ClassVar[tuple[type[BaseException], ...]] = ()
    # Errors the work raises when it stopped because it was asked to (cancel, shutdown, time limit).
    stopped: ClassVar[tuple[type[BaseException], ...]] = ()

    def run(self, attempt: Attempt) -> str:
        raise NotImplementedError

    def reason(self, exc: BaseException) -> str:
        """The failure as the job's `error` (tenants read it)."""
        text = str(exc).strip() or type(exc).__name__
        return text if isinstance(exc, LetheError) else f"{type(exc).__name__}: {text}"

    def admit(self, session: Session, job: Job) -> JobState | None:
        """At lease time: None to run the job, or the state to close it in without running (its subject was
        decided elsewhere meanwhile)."""
        return None

    def started(self, session: Session, job: Job, held: Lease) -> None: ...

    def succeeded(self, session: Session, job: Job, held: Lease, result: Any) -> None: ...

    def requeued(self, session: Session, job: Job) -> None: ...

    def failed(self, session: Session, job: Job, actor: str, reason: str, evidence: Any) -> None: ...

    def cancelled(self, session: Session, job: Job, actor: str) -> None: ...


_HANDLERS: dict[JobKind, JobHandler] = {}


def register(handler: JobHandler) -> JobHandler:
    """Make `handler` the one for its kind (registering the same class again is harmless)."""
    current = _HANDLERS.get(handler.kind)
    if current is not None and type(current) is not type(handler):
        raise ValueError(f"job kind {handler.kind.value} already has a handler: {type(current).__name__}")
    _HANDLERS[handler.kind] = handler
    return handler


def get(kind: JobKind | str) -> JobHandler:
    try:
        return _HANDLERS[JobKind(kind)]
    except KeyError:
        raise LookupError(f"no handler registered for job kind {kind!s}; the process must call "
                          "core.wiring.load() at start") from None


def registered() -> dict[JobKind, JobHandler]:
    return dict(_HANDLERS)
