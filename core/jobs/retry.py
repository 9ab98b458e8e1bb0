"""The one retry policy: exponential backoff, and which failures are transient.

Used for job attempts (`job_retry_backoff_seconds`), webhook deliveries (`webhook_backoff_seconds`) and a
worker's database steps while the database is away (`retry_db`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from core.logging import get_logger
from core.storage.base import StoreUnavailable

T = TypeVar("T")
log = get_logger(__name__)


def backoff_seconds(attempt: int, base: float, *, cap: float = 3600.0) -> float:
    """Delay after failed attempt n (1-based): base, 2·base, 4·base, ... capped at `cap`."""
    return min(base * 2 ** max(attempt - 1, 0), cap)


def is_db_outage(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def is_transient(exc: BaseException) -> bool:
    return is_db_outage(exc) or isinstance(exc, StoreUnavailable | ConnectionError | TimeoutError)


def retry_db(step: Callable[[], T], *, what: str, max_wait: float = 300.0, first_delay: float = 0.5) -> T:
    """Run `step` (one unit of work), backing off (capped at 10 s) while the database is unreachable."""
    deadline = time.monotonic() + max_wait
    attempt = 1
    while True:
        try:
            return step()
        except Exception as exc:
            delay = backoff_seconds(attempt, first_delay, cap=10.0)
            if not is_db_outage(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable; backing off", step=what, retry_in_s=round(delay, 2),
                        error=str(exc).splitlines()[0][:200])
            time.sleep(delay)
            attempt += 1
