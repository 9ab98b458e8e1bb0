"""SPARE erasure engine: saliency-localized sparse LoRA, self-distillation to a surrogate, concept-aware
timestep sampling; plus the ESD baseline behind the same `erase` interface (core.spare.methods).

The engine's names load on first use: `core.spare.errors` (and the package itself) import without torch, so
processes that never erase (the API, beat, default-queue workers) run on an install without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from core.spare.errors import ErasureCancelled, ErasureInputError, UnsupportedModelError

if TYPE_CHECKING:
    from core.spare.engine import STAGES, erase
    from core.spare.report import ErasureReport, ErasureResult
    from core.spare.specs import ConceptSpec, ErasureSpec, EsdConfig, SpareConfig

_LAZY = {
    "STAGES": "core.spare.stages", "ErasureResult": "core.spare.report", "ErasureReport": "core.spare.report",
    "erase": "core.spare.engine",
    "ConceptSpec": "core.spare.specs", "ErasureSpec": "core.spare.specs", "EsdConfig": "core.spare.specs",
    "SpareConfig": "core.spare.specs",
}

__all__ = [
    "STAGES", "ConceptSpec", "ErasureCancelled", "ErasureInputError", "ErasureReport", "ErasureResult", "ErasureSpec",
    "EsdConfig",
    "SpareConfig", "UnsupportedModelError", "erase",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'core.spare' has no attribute {name!r}")
