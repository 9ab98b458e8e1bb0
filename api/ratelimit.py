"""Rate limits: per API key, and per client address for requests that present no valid key.

Counted with `limits` (a moving window: at most N requests in any 60 s) in a storage every API process shares
— Redis in production (`LETHE_RATE_LIMIT_STORAGE_URL`, default the broker's Redis), so N processes allow N
requests per minute, not N× — or in this process's memory in embedded mode.

When the shared storage cannot be reached the request is let through (logged, at most once a minute): an
outage of the limiter must not become an outage of the API.
"""

from __future__ import annotations

import math
import threading
import time

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.types import Scope

from core.errors import RateLimited
from core.logging import get_logger

log = get_logger(__name__)

NAMESPACE = "lethe-rl"


class RateLimiter:
    def __init__(self, per_minute: int, *, anonymous_per_minute: int = 0, storage_url: str = "memory://") -> None:
        self.storage_url = storage_url
        self._key_limit = RateLimitItemPerMinute(per_minute, namespace=NAMESPACE) if per_minute > 0 else None
        self._anon_limit = (RateLimitItemPerMinute(anonymous_per_minute, namespace=NAMESPACE)
                            if anonymous_per_minute > 0 else None)
        self._strategy = MovingWindowRateLimiter(storage_from_string(storage_url))
        self._warned_at = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._key_limit is not None

    @property
    def anonymous_enabled(self) -> bool:
        return self._anon_limit is not None

    def acquire(self, key: str) -> float:
        """One request of API key `key`: 0 when allowed; otherwise the seconds until one is allowed again."""
        return self._hit(self._key_limit, "key", key)

    def acquire_anonymous(self, address: str) -> float:
        """One request without a valid API key from client `address` (same answer as `acquire`)."""
        return self._hit(self._anon_limit, "addr", address)

    def _hit(self, item: RateLimitItemPerMinute | None, kind: str, ident: str) -> float:
        if item is None:
            return 0.0
        try:
            if self._strategy.hit(item, kind, ident):
                return 0.0
            reset = self._strategy.get_window_stats(item, kind, ident).reset_time
        except Exception as exc:
            self._warn(exc)
            return 0.0
        return max(0.001, reset - time.time())

    def _warn(self, exc: Exception) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._warned_at < 60:
                return
            self._warned_at = now
        log.warning("rate limit storage unavailable; requests are not limited", error=type(exc).__name__)


def retry_after_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


def client_address(scope: Scope) -> str:
    """The peer's address (uvicorn's --proxy-headers puts the forwarded client here behind a trusted proxy)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def throttle_anonymous(limiter: RateLimiter, address: str) -> None:
    """RateLimited (429) when `address` has used up its budget of requests without a valid key."""
    wait = limiter.acquire_anonymous(address)
    if wait > 0:
        raise RateLimited("too many requests without a valid API key from this address",
                          retry_after=retry_after_seconds(wait))
