"""A bounded LRU of loaded base pipelines, keyed by model fingerprint, so back-to-back erasures of one
model reuse it instead of reloading it from disk. One per worker process (GPU workers run one job at a time)."""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class ModelCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.loads = 0

    def get(self, fingerprint: str, loader: Callable[[], Any]) -> Any:
        """The cached pipeline for `fingerprint`, loading (and evicting the least recently used) if needed."""
        with self._lock:
            if fingerprint in self._items:
                self._items.move_to_end(fingerprint)
                self.hits += 1
                return self._items[fingerprint]
        value = loader()
        with self._lock:
            self.loads += 1
            if self.capacity <= 0:
                return value
            self._items[fingerprint] = value
            self._items.move_to_end(fingerprint)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
                _release_memory()
        return value

    def discard(self, fingerprint: str) -> None:
        """Forget a pipeline that may have been left in a bad state (an attempt died inside the engine)."""
        with self._lock:
            if self._items.pop(fingerprint, None) is not None:
                _release_memory()

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._items

    def __len__(self) -> int:
        return len(self._items)


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


_CACHE: ModelCache | None = None


def process_cache(capacity: int) -> ModelCache:
    """The worker process's cache (created on first use with the configured capacity)."""
    global _CACHE
    if _CACHE is None or _CACHE.capacity != capacity:
        _CACHE = ModelCache(capacity)
    return _CACHE
