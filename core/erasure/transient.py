"""Transient failures: which errors a worker retries, and running a database step until the database is back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from core.logging import get_logger
from core.storage.base import StoreUnavailable

T = TypeVar("T")
log = get_logger(__name__)


def is_db_outage(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def is_transient(exc: BaseException) -> bool:
    return is_db_outage(exc) or isinstance(exc, StoreUnavailable | ConnectionError | TimeoutError)


def retry_db(step: Callable[[], T], *, what: str, max_wait: float = 300.0, first_delay: float = 0.5) -> T:
    """Run `step` (one unit of work), backing off exponentially while the database is unreachable."""
    deadline = time.monotonic() + max_wait
    delay = first_delay
    while True:
        try:
            return step()
        except Exception as exc:
            if not is_db_outage(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable; backing off", step=what, retry_in_s=round(delay, 2),
                        error=str(exc).splitlines()[0][:200])
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
