"""Consumer watchdog: restarts a worker's broker consumer that has silently stopped consuming.

Measured here: after a Redis restart during a long task on a solo worker, kombu sometimes reconnects its
command connection but leaves the BRPOP poller on a dead socket — the worker stays idle forever while
its queue holds messages, and logs nothing. The watchdog notices "idle, and messages waiting in my
queues for `stall_seconds`" and raises a connection error inside the worker's event loop, which makes
Celery run its normal reconnect path (re-declare queues, new BRPOP).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from celery.signals import worker_ready
from celery.worker import state

from core.logging import get_logger

log = get_logger(__name__)


class ConsumerWatchdog(threading.Thread):
    def __init__(self, consumer: Any, *, interval: float = 2.0, stall_seconds: float = 10.0) -> None:
        super().__init__(name="lethe-consumer-watchdog", daemon=True)
        self.consumer = consumer
        self.interval = interval
        self.stall_seconds = stall_seconds
        self.restarts = 0

    def _depth(self) -> int:
        queues = [q.name for q in self.consumer.task_consumer.queues] if self.consumer.task_consumer else []
        with self.consumer.app.connection_for_write() as conn:
            client = conn.default_channel.client
            return sum(int(client.llen(name)) for name in queues)

    def run(self) -> None:
        stalled_since: float | None = None
        while True:
            time.sleep(self.interval)
            try:
                busy = bool(state.active_requests or state.reserved_requests)
                depth = 0 if busy else self._depth()
            except Exception:
                stalled_since = None  # broker unreachable: Celery's own reconnect logic is in charge
                continue
            if busy or depth == 0:
                stalled_since = None
                continue
            now = time.monotonic()
            if stalled_since is None:
                stalled_since = now
            elif now - stalled_since >= self.stall_seconds:
                log.warning("consumer stalled: messages wait but none is consumed; reconnecting", waiting=depth)
                self.restarts += 1
                stalled_since = None
                hub = getattr(self.consumer, "hub", None)
                if hub is not None:
                    hub.call_soon(_fail_connection)


def _fail_connection() -> None:
    raise redis.exceptions.ConnectionError("consumer watchdog: consumer stalled; forcing a reconnect")


@worker_ready.connect
def _start_watchdog(sender: Any = None, **_: Any) -> None:
    if sender is not None and sender.app.conf.broker_url.startswith(("redis://", "rediss://")):
        ConsumerWatchdog(sender).start()
