"""What an erasure changed in the UNet: its fused/ weights minus the base's, for the modules its report names."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def fused_changes(base: torch.nn.Module, out: Path) -> dict[str, torch.Tensor]:
    """Fused minus base weight of each module in the report's `adapter.target_modules` (base: the UNet erased)."""
    fused = type(base).from_pretrained(str(out / "fused" / "unet"))
    before, after = dict(base.named_modules()), dict(fused.named_modules())
    modules = json.loads((out / "report.json").read_text())["adapter"]["target_modules"]
    return {name: (after[name].weight - before[name].weight).detach() for name in modules}
