"""What the frozen base model drew, kept for the next round of the same job.

Every round of erase-until-verified starts again from the same base weights, so the teacher's latents for a
prompt and seed, and the base half of the before/after grid, are what the round before drew for that prompt,
seed and sampling (steps, guidance). One `BaseOutputs` per job (`core.spare.rounds` makes it) and the engine
draws only what no earlier round drew. Valid only while the pipeline holds the weights it was filled from: a
caller that changes the base weights between rounds makes a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

# (prompt, seed, steps, guidance): all that decides a draw of one model at one resolution.
DrawKey = tuple[str, int, int, float]


@dataclass
class BaseOutputs:
    latents: dict[DrawKey, Any] = field(default_factory=dict)  # teacher latents (torch tensors, CPU)
    images: dict[DrawKey, Any] = field(default_factory=dict)  # grid images (PIL)


def drawn(memo: dict[Any, Any] | None, keys: Sequence[Hashable],
          draw: Callable[[list[int]], list[Any]]) -> list[Any]:
    """One output per key, in order: from `memo` where an earlier call drew it, the rest through
    `draw(indices of the missing keys)` (which returns them in that order) and remembered. No memo: all drawn."""
    if memo is None:
        return draw(list(range(len(keys))))
    missing = [i for i, key in enumerate(keys) if key not in memo]
    if missing:
        for i, value in zip(missing, draw(missing), strict=True):
            memo[keys[i]] = value
    return [memo[key] for key in keys]
