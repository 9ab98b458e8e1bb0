"""A liveness file for processes that serve no HTTP: `lethe worker` and `lethe beat` touch it while healthy.

A container health check reads its age with a Python one-liner (no pgrep, no broker round trip), e.g.
`python -c "import os,sys,time; sys.exit(time.time() - os.stat('/tmp/lethe.alive').st_mtime > 60)"`.
A solo Celery worker busy with a long job cannot answer `celery inspect ping`; this file keeps being touched
by a thread as long as every running job's lease is renewed in time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core.logging import get_logger

log = get_logger(__name__)


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)
    os.utime(path)


def age_seconds(path: Path) -> float:
    """Seconds since the file was last touched (OSError when it does not exist)."""
    return time.time() - path.stat().st_mtime


class Heartbeat(threading.Thread):
    """Touches `path` every `interval` seconds while `healthy()` says so (and once at start)."""

    def __init__(self, path: Path, interval: float, healthy: Callable[[], bool] = lambda: True) -> None:
        super().__init__(name="lethe-heartbeat", daemon=True)
        self.path = path
        self.interval = interval
        self.healthy = healthy
        self._stop_event = threading.Event()

    def beat(self) -> bool:
        try:
            ok = self.healthy()
        except Exception:
            log.exception("health check failed")
            ok = False
        if ok:
            try:
                touch(self.path)
            except OSError as exc:
                log.warning("heartbeat file not writable", path=str(self.path), error=str(exc)[:200])
        else:
            log.warning("unhealthy: heartbeat file not touched", path=str(self.path))
        return ok

    def run(self) -> None:
        self.beat()
        while not self._stop_event.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self._stop_event.set()
