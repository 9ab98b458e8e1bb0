"""A bounded pool that delivers webhooks in the background, one lane per endpoint.

Deliveries to different endpoints (hence different tenants and receivers) run concurrently on up to
`workers` threads; deliveries to the same endpoint run one at a time, so a slow receiver holds at most one
thread however many events queue up for it, and lanes take turns (one delivery per turn). Each attempt ends
by its deadline (`core.webhooks.transport`). `close` waits a bounded time; what did not run stays `pending`
in the database and the retry sweep delivers it later.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from core.db import unit_of_work
from core.logging import get_logger
from core.webhooks import repository

log = get_logger(__name__)


def _deliver(delivery_id: uuid.UUID) -> object:
    from core.webhooks.service import deliver

    return deliver(delivery_id)


class DeliveryPool:
    def __init__(self, workers: int, deliver: Callable[[uuid.UUID], object] = _deliver) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="lethe-webhooks")
        self._deliver = deliver
        self._lock = threading.Lock()
        self._lanes: dict[uuid.UUID | None, deque[uuid.UUID]] = {}
        self._queued: set[uuid.UUID] = set()
        self._closed = False
        self._idle = threading.Condition(self._lock)

    def submit(self, delivery_id: uuid.UUID) -> None:
        """Queue a delivery on its endpoint's lane (a no-op if it is already queued or running)."""
        with unit_of_work() as session:
            lane = repository.endpoint_of(session, delivery_id)
        with self._lock:
            if self._closed or delivery_id in self._queued:
                return
            self._queued.add(delivery_id)
            queue = self._lanes.get(lane)
            if queue is not None:
                queue.append(delivery_id)  # the lane is busy: it takes this one on a later turn
                return
            self._lanes[lane] = deque([delivery_id])
            self._executor.submit(self._turn, lane)

    def _turn(self, lane: uuid.UUID | None) -> None:
        with self._lock:
            delivery_id = self._lanes[lane][0]
        try:
            self._deliver(delivery_id)
        except Exception:
            log.exception("webhook delivery failed", delivery_id=str(delivery_id))
        with self._lock:
            queue = self._lanes[lane]
            queue.popleft()
            self._queued.discard(delivery_id)
            if queue and not self._closed:
                self._executor.submit(self._turn, lane)  # back of the line: other lanes go first
            else:
                del self._lanes[lane]
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: not self._lanes, timeout)

    def close(self, timeout: float) -> None:
        """Stop taking deliveries; wait at most `timeout` for the attempts in flight (each ends by its deadline)."""
        with self._lock:
            self._closed = True
            for queue in self._lanes.values():
                while len(queue) > 1:
                    self._queued.discard(queue.pop())  # not started: left pending for the retry sweep
        self.wait_idle(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)
