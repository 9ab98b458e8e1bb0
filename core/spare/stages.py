"""Per-run bookkeeping of the engine's stages: progress, stop polling, stage timings and peak memory."""

from __future__ import annotations

import time
from collections.abc import Callable

from core.spare.errors import ErasureCancelled
from core.spare.memory import PeakMemory

ProgressFn = Callable[[str, float], None]
StopFn = Callable[[], bool]

# Stage names passed to `progress`, in order (a method runs the ones it needs between samples and evaluate).
STAGES = ("samples", "saliency", "timesteps", "distill", "fuse", "evaluate", "write")


class StageClock:
    """Begins and ends stages: reports progress, raises ErasureCancelled when asked to stop, times each."""

    def __init__(self, progress: ProgressFn | None, should_stop: StopFn | None, memory: PeakMemory) -> None:
        self.progress = progress
        self.should_stop = should_stop
        self.memory = memory
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._t0 = 0.0

    def begin(self, stage: str) -> None:
        self.end()
        self.check_stop()
        self._stage, self._t0 = stage, time.perf_counter()
        self.memory.stage(stage)
        self.tick(0.0)

    def end(self) -> None:
        if self._stage is not None:
            self.timings[self._stage] = round(time.perf_counter() - self._t0, 4)
            self.tick(1.0)
            self._stage = None

    def tick(self, fraction: float) -> None:
        if self.progress is not None and self._stage is not None:
            self.progress(self._stage, min(1.0, max(0.0, fraction)))

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise ErasureCancelled(f"erasure cancelled before stage {self._stage or 'start'}")
