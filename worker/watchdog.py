"""Consumer watchdog: a worker whose broker consumer has silently stopped consuming recovers, or exits.

Two ways a solo worker was measured to go idle for good after a Redis restart while its queue held messages
(and to log nothing):

1. kombu reconnected its command connection but left the BRPOP poller on a dead socket. The event loop
   still runs: a connection error raised inside it makes Celery take its normal reconnect path
   (re-declare the queues, issue a new BRPOP). That is the first remedy. The poller's connection is dropped
   first: closing a channel whose BRPOP is unanswered reads its reply, and on a half-open socket that read
   blocks the main thread for the broker's socket timeout (30 s) — longer than the watchdog waits.
2. The main thread blocked for good in a read without a timeout: redis-py's pub/sub read after its own
   reconnect (the worker's remote-control subscription; `worker.app` turns remote control off for this
   reason). Nothing inside the process can unblock it: the event loop never gets to run the remedy.

The watchdog notices "idle, and messages waiting in my queues for `stall_seconds`"
(LETHE_WORKER_STALL_SECONDS), applies remedy 1, and when the stall outlives it by another `stall_seconds` it
logs where the main thread is stuck and ends the process with exit code 70, so that its supervisor (the compose
file's `restart: unless-stopped`, systemd, Kubernetes) starts a fresh one. An idle worker holds no job: the job
table, the leases and the doorbells service keep every job, and the broker returns any unacknowledged message
after its visibility timeout. kombu (5.7) drops a BRPOP connection whose reply is overdue by itself too, after
about 51 s; the watchdog also covers the stalls that check does not see (a blocked main thread).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import redis
from celery.signals import worker_ready
from celery.worker import state

from core.config import get_settings
from core.logging import get_logger

log = get_logger(__name__)

EXIT_STALLED = 70  # EX_SOFTWARE: the supervisor restarts the worker


class ConsumerWatchdog(threading.Thread):
    def __init__(self, consumer: Any, *, interval: float = 2.0, stall_seconds: float = 10.0,
                 exit: Callable[[int], None] = os._exit) -> None:
        super().__init__(name="lethe-consumer-watchdog", daemon=True)
        self.consumer = consumer
        self.interval = interval
        self.stall_seconds = stall_seconds
        self.exit = exit
        self.reconnect_tried = False  # in the current stall

    def _busy(self) -> bool:
        return bool(state.active_requests or state.reserved_requests)

    def _depth(self) -> int:
        queues = [q.name for q in self.consumer.task_consumer.queues] if self.consumer.task_consumer else []
        with self.consumer.app.connection_for_write() as conn:
            client = conn.default_channel.client
            return sum(int(client.llen(name)) for name in queues)

    def check(self, stalled_since: float | None, now: float) -> float | None:
        """One look at the consumer; returns when the current stall began (None: not stalled)."""
        try:
            busy = self._busy()
            depth = 0 if busy else self._depth()
        except Exception as exc:
            log.debug("consumer watchdog: broker not readable", error=str(exc))
            return None  # broker unreachable: Celery's own reconnect logic is in charge
        if busy or depth == 0:
            self.reconnect_tried = False
            return None
        if stalled_since is None:
            return now
        if now - stalled_since < self.stall_seconds:
            return stalled_since
        if not self.reconnect_tried:
            log.warning("consumer stalled: messages wait but none is consumed; reconnecting", waiting=depth)
            self.reconnect_tried = True
            hub = getattr(self.consumer, "hub", None)
            if hub is not None:
                hub.call_soon(_fail_connection, self.consumer)
            return now
        log.error("consumer stalled and the reconnect did not help; exiting for the supervisor to restart the "
                  "worker", waiting=depth, exit_code=EXIT_STALLED, main_thread=_main_thread_stack())
        self.exit(EXIT_STALLED)
        return None

    def run(self) -> None:
        stalled_since: float | None = None
        while True:
            time.sleep(self.interval)
            stalled_since = self.check(stalled_since, time.monotonic())


def _main_thread_stack() -> str:
    """Where the main thread is now (the innermost frames): what an operator needs to see why it hangs."""
    frame = sys._current_frames().get(threading.main_thread().ident or -1)
    return "".join(traceback.format_stack(frame, limit=8)) if frame is not None else "unknown"


def _fail_connection(consumer: Any) -> None:
    """Run in the event loop: drop every channel's BRPOP connection (kombu's redis transport keeps the one with
    a BRPOP in flight as `_in_poll`, and its own stale-BRPOP check drops it the same way), then fail."""
    transport = getattr(getattr(consumer, "connection", None), "transport", None)
    for channel in list(getattr(getattr(transport, "cycle", None), "_channels", ())):
        polling = getattr(channel, "_in_poll", None)
        if polling:
            polling.disconnect()
    raise redis.exceptions.ConnectionError("consumer watchdog: consumer stalled; forcing a reconnect")


@worker_ready.connect
def _start_watchdog(sender: Any = None, **_: Any) -> None:
    if sender is not None and sender.app.conf.broker_url.startswith(("redis://", "rediss://")):
        stall = get_settings().worker_stall_seconds
        ConsumerWatchdog(sender, interval=min(2.0, stall / 5), stall_seconds=stall).start()
