"""The interface every erasure method implements (core.spare.methods registers them by name).

The engine (core.spare.engine.erase) runs what all methods share — checks, samples, the before/after grid,
evaluation, outputs and the typed report — and hands the method one `MethodRun` in between. A method trains,
leaves the erased weights in place in the pipeline's UNet with the replaced tensors in `run.originals` (the
engine restores them), writes fused/ (and adapter/ if it has one), and returns what it did as a `MethodOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel

from core.spare.conditioning import PromptEncoder
from core.spare.distill import DistillData
from core.spare.outputs import FUSED_DIR, Provenance, save_fused
from core.spare.report import AdapterInfo, EsdInfo
from core.spare.specs import ErasureSpec
from core.spare.stages import StageClock

MAX_CURVE_POINTS = 1000


@dataclass
class MethodRun:
    """What a method works with: the pipeline, the request, the shared samples and the run's bookkeeping."""

    pipeline: Any
    spec: ErasureSpec
    data: DistillData
    stages: StageClock
    generator: torch.Generator
    dtype: torch.dtype | None  # autocast dtype of frozen weights (None = float32)
    out_dir: Path
    originals: dict[str, torch.Tensor]  # every tensor the method changed in place, as it was before
    encoder: PromptEncoder
    architecture: str
    provenance: Provenance
    noise: Any  # the forward (noising) process to train with (`training_scheduler`), not the folder's sampler

    def save_fused(self) -> None:
        self.stages.tick(0.5)
        save_fused(self.pipeline, self.out_dir / FUSED_DIR)


@dataclass
class MethodOutcome:
    """A method's part of the report."""

    loss_curve: dict[str, list[float]]
    timesteps: dict[str, Any] | None = None
    saliency: dict[str, Any] | None = None
    adapter: AdapterInfo | None = None
    esd: EsdInfo | None = None


class ErasureMethod(Protocol):
    name: str  # the request's `method`
    config_type: type[BaseModel]  # its typed, bounded config (core.spare.specs)

    def check(self, pipeline: Any, config: Any) -> None:
        """Raise ErasureInputError when this method cannot run on the pipeline with the config."""

    def train(self, run: MethodRun, config: Any) -> MethodOutcome:
        """Erase in place; write fused/ (and adapter/)."""


def curve(values: list[float]) -> list[float]:
    """A loss curve thinned to at most MAX_CURVE_POINTS points for the report."""
    if len(values) <= MAX_CURVE_POINTS:
        return [round(v, 6) for v in values]
    stride = len(values) / MAX_CURVE_POINTS
    return [round(values[int(i * stride)], 6) for i in range(MAX_CURVE_POINTS)]
