"""SPARE erasure engine: saliency-localized sparse LoRA, self-distillation to a surrogate, concept-aware
timestep sampling; plus the ESD baseline behind the same `erase` interface."""

from core.spare.engine import STAGES, ErasureResult, erase
from core.spare.errors import ErasureCancelled, ErasureInputError, UnsupportedModelError
from core.spare.specs import ConceptSpec, ErasureSpec, EsdConfig, SpareConfig

__all__ = [
    "STAGES", "ConceptSpec", "ErasureCancelled", "ErasureInputError", "ErasureResult", "ErasureSpec", "EsdConfig",
    "SpareConfig", "UnsupportedModelError", "erase",
]
