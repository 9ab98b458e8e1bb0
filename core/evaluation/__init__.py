"""Evaluation: judges and held-out evidence for any model; for the mini-canvas testbed also adherence, erasure
metrics (UA/IRA/CRA), noise-space metrics, the robustness probe and grids.

The canvas-specific modules load on first use, so that a job on a user's model never imports the testbed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Adherence": "core.evaluation.adherence",
    "prompt_adherence": "core.evaluation.adherence",
    "Metrics": "core.evaluation.metrics",
    "TargetMetrics": "core.evaluation.metrics",
    "concept_kind": "core.evaluation.metrics",
    "evaluate": "core.evaluation.metrics",
}

__all__ = ["Adherence", "Metrics", "TargetMetrics", "concept_kind", "evaluate", "prompt_adherence"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'core.evaluation' has no attribute {name!r}")
