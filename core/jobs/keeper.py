"""Keeps a running attempt's lease alive and reports its progress, from a background thread.

The engine calls `progress(stage, fraction)` as often as it likes; the keeper writes the latest value to the
job row at most every `job_progress_interval_seconds`, extending the lease with each write. A heartbeat
also reads `cancel_requested`, so `should_stop()` answers without touching the database. If the row says
another attempt owns the job (fencing), `lost` is set and the engine is told to stop.

The wall-clock limit (`job_time_limit_seconds`) is enforced here, in every worker pool (Celery's time limits
do nothing under `--pool=solo`): past it, `timed_out` is set and the work is told to stop — the runner then
records a retryable failure, which releases the lease. Work that does not stop within one more lease period
is left behind: the keeper stops renewing, the lease expires, the reaper takes the job back, and the
process's heartbeat file goes stale (`leases_fresh`), so its container is restarted.
"""

from __future__ import annotations

import threading
import time

from core.config import Settings
from core.db import unit_of_work
from core.errors import StaleAttempt
from core.jobs import lifecycle
from core.jobs.metrics import StageClock
from core.jobs.retry import is_db_outage
from core.logging import get_logger

log = get_logger(__name__)

class AttemptStopped(Exception):
    """Raised by `LeaseKeeper.check()` between steps: the attempt was asked to stop (cancel, shutdown, limit)."""


# Keepers of the attempts running in this process (the worker's health check reads them).
_ACTIVE: set[LeaseKeeper] = set()
_ACTIVE_LOCK = threading.Lock()


def leases_fresh() -> bool:
    """True unless a running attempt in this process failed to renew its lease for a whole lease period."""
    now = time.monotonic()
    with _ACTIVE_LOCK:
        return all(now - keeper.last_renewed < keeper.lease_seconds for keeper in _ACTIVE)


class LeaseKeeper:
    def __init__(self, held: lifecycle.Lease, settings: Settings, shutdown: threading.Event | None = None) -> None:
        self.held = held
        # Set when the process shuts down gracefully: stop and hand the job back to the queue.
        self.shutdown = shutdown or threading.Event()
        self.lease_seconds = settings.job_lease_seconds
        self.interval = max(0.2, min(settings.job_progress_interval_seconds, self.lease_seconds / 3))
        self.time_limit = settings.job_time_limit_seconds
        self.started = time.monotonic()
        self.cancel_requested = False
        self.lost = False
        self.timed_out = False
        self._stage: str | None = None
        self._fraction: float | None = None
        self._dirty = False
        self.last_renewed = time.monotonic()  # the lease was just taken
        self.stages = StageClock(held.kind.value)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{held.job_id}", daemon=True)

    def start(self) -> LeaseKeeper:
        with _ACTIVE_LOCK:
            _ACTIVE.add(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)
        self.stages.finish()
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    def progress(self, stage: str, fraction: float) -> None:
        self.stages.enter(stage)
        with self._lock:
            self._stage, self._fraction, self._dirty = stage, fraction, True

    def should_stop(self) -> bool:
        return self.cancel_requested or self.lost or self.shutdown.is_set() or self.over_time()

    def over_time(self) -> bool:
        if not self.timed_out and time.monotonic() - self.started > self.time_limit:
            self.timed_out = True
            log.warning("attempt exceeded its time limit; stopping", job_id=str(self.held.job_id),
                        limit_s=self.time_limit)
        return self.timed_out

    def check(self) -> None:
        """Between steps outside the engine: stop here if the job was cancelled, ran out of time or the
        lease was lost."""
        if self.lost:
            raise StaleAttempt(f"job {self.held.job_id} attempt {self.held.attempt} lost its lease")
        if self.cancel_requested or self.shutdown.is_set() or self.over_time():
            raise AttemptStopped("cancelled on request" if self.cancel_requested else
                                 "time limit exceeded" if self.timed_out else "worker shutting down")

    def beat(self) -> None:
        with self._lock:
            stage, fraction, dirty = self._stage, self._fraction, self._dirty
            self._dirty = False
        try:
            with unit_of_work() as session:
                result = lifecycle.heartbeat(
                    session, self.held, self.lease_seconds,
                    stage=stage if dirty else None, progress=fraction if dirty else None,
                )
            self.last_renewed = time.monotonic()
            if result.cancel_requested and not self.cancel_requested:
                log.info("cancellation requested", job_id=str(self.held.job_id))
            self.cancel_requested = result.cancel_requested
        except StaleAttempt:
            log.warning("lease lost to another attempt; stopping", job_id=str(self.held.job_id),
                        attempt=self.held.attempt)
            self.lost = True
        except Exception as exc:
            # Database away: keep working; if it stays away past the lease, the next beat finds us stale.
            if not is_db_outage(exc):
                log.exception("heartbeat failed", job_id=str(self.held.job_id))
            else:
                log.warning("heartbeat skipped: database unavailable", job_id=str(self.held.job_id))
            with self._lock:
                self._dirty = self._dirty or dirty

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.over_time() and time.monotonic() - self.started > self.time_limit + self.lease_seconds:
                # The work ignored the stop: let the lease lapse (the reaper takes the job back).
                log.error("attempt did not stop after its time limit; abandoning its lease",
                          job_id=str(self.held.job_id))
                return
            self.beat()
            if self.lost:
                return
