"""Peak memory during a run: process RSS sampled by a background thread, plus CUDA's allocator peak."""

from __future__ import annotations

import threading

import psutil
import torch


class PeakMemory:
    """Tracks the peak resident set size (and CUDA peak) overall and per named stage."""

    def __init__(self, interval: float = 0.02) -> None:
        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.peak_rss = self._proc.memory_info().rss
        self.start_rss = self.peak_rss
        self._stage: str | None = None
        self.stage_peaks: dict[str, int] = {}
        self.stage_cuda_peaks: dict[str, int] = {}
        self.cuda_peak = 0
        self._cuda = torch.cuda.is_available()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        rss = self._proc.memory_info().rss
        with self._lock:
            self.peak_rss = max(self.peak_rss, rss)
            if self._stage is not None:
                self.stage_peaks[self._stage] = max(self.stage_peaks.get(self._stage, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> PeakMemory:
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._close_cuda_stage()

    def _close_cuda_stage(self) -> None:
        if self._cuda and self._stage is not None:
            peak = int(torch.cuda.max_memory_allocated())
            self.stage_cuda_peaks[self._stage] = max(self.stage_cuda_peaks.get(self._stage, 0), peak)
            self.cuda_peak = max(self.cuda_peak, peak)
            torch.cuda.reset_peak_memory_stats()

    def stage(self, name: str) -> None:
        self._sample()
        self._close_cuda_stage()
        with self._lock:
            self._stage = name

    def report(self) -> dict[str, object]:
        self._sample()
        out: dict[str, object] = {
            "peak_rss_bytes": self.peak_rss,
            "start_rss_bytes": self.start_rss,
            "stage_peak_rss_bytes": dict(self.stage_peaks),
        }
        if self._cuda:
            out["cuda_peak_allocated_bytes"] = max(self.cuda_peak, int(torch.cuda.max_memory_allocated()))
            out["stage_cuda_peak_allocated_bytes"] = dict(self.stage_cuda_peaks)
        return out
