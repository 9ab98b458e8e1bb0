"""Concept-aware timestep sampling.

The teacher's importance of timestep t for a concept is d(t) = E‖ε_T(x_t, t, c_forget) − ε_T(x_t, t, c_surrogate)‖²:
where the frozen model barely tells the concept from its surrogate there is little to erase. d is probed on
a coarse grid, interpolated to every training timestep, and t is drawn from
p(t) = (1 − m) · d(t)^γ / Σ d^γ + m / T, the uniform share m keeping every range alive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from core.spare.conditioning import Cond, unet_eps


@dataclass
class TimestepSampler:
    probs: torch.Tensor  # [num_concepts, T]
    grid: list[int]
    importance: list[list[float]]  # per concept, d on the grid
    mode: str

    def sample(self, concept_index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rows = self.probs[concept_index.cpu()]
        return torch.multinomial(rows, 1, replacement=True, generator=generator).squeeze(1)

    def uniform(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.probs.shape[1], (n,), generator=generator)

    def pooled(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n timesteps from the concepts' distributions averaged: where the forget term trains, whatever concept."""
        return torch.multinomial(self.probs.mean(0), n, replacement=True, generator=generator)

    def report(self, drawn: list[int], bins: int = 20) -> dict[str, Any]:
        total = self.probs.shape[1]
        hist = torch.histc(torch.tensor(drawn, dtype=torch.float32), bins=bins, min=0, max=total) if drawn else None
        edges = [round(i * total / bins) for i in range(bins + 1)]
        return {
            "mode": self.mode,
            "grid": self.grid,
            "importance": self.importance,
            "bin_edges": edges,
            "sampled_histogram": [int(v) for v in hist.tolist()] if hist is not None else [],
            "probability_per_bin": [
                [float(row[edges[i] : edges[i + 1]].sum()) for i in range(bins)] for row in self.probs
            ],
        }


def uniform_sampler(num_concepts: int, num_train: int) -> TimestepSampler:
    probs = torch.full((num_concepts, num_train), 1.0 / num_train)
    return TimestepSampler(probs, [], [], "uniform")


@torch.no_grad()
def concept_sampler(
    unet: Any,
    scheduler: Any,
    latents: torch.Tensor,
    forget: Cond,
    surrogate: Cond,
    concept_index: torch.Tensor,
    num_concepts: int,
    *,
    grid_size: int,
    gamma: float,
    uniform_mix: float,
    generator: torch.Generator,
    dtype: torch.dtype | None,
    per_concept: int = 8,
    tick: Callable[[float], None] | None = None,
) -> TimestepSampler:
    """Probe d(t) with the teacher on `grid_size` timesteps, `per_concept` latents per concept."""
    num_train = int(scheduler.config.num_train_timesteps)
    grid = torch.linspace(0, num_train - 1, grid_size).round().long()
    device = latents.device
    importance = torch.zeros(num_concepts, grid_size)
    for c in range(num_concepts):
        members = torch.nonzero(concept_index == c).flatten()
        pick = members[torch.randperm(len(members), generator=generator)[:per_concept].to(members.device)]
        x0 = latents[pick]
        noise = torch.randn(x0.shape, generator=generator).to(device)
        for gi, t_val in enumerate(grid.tolist()):
            t = torch.full((x0.shape[0],), t_val, device=device, dtype=torch.long)
            x_t = scheduler.add_noise(x0, noise, t)
            both = Cond.cat([forget.index(pick), surrogate.index(pick)])
            out = unet_eps(unet, torch.cat([x_t, x_t]), torch.cat([t, t]), both, dtype).float()
            e_f, e_s = out.chunk(2)
            importance[c, gi] = ((e_f - e_s) ** 2).mean()
            if tick:
                tick((c * grid_size + gi + 1) / (num_concepts * grid_size))
    all_t = torch.arange(num_train, dtype=torch.float32)
    probs = torch.empty(num_concepts, num_train)
    for c in range(num_concepts):
        d = torch.clamp(_interp(all_t, grid.float(), importance[c]), min=0.0) ** gamma
        focus = d / d.sum() if float(d.sum()) > 0 else torch.full_like(d, 1.0 / num_train)
        probs[c] = (1 - uniform_mix) * focus + uniform_mix / num_train
    return TimestepSampler(probs, grid.tolist(), importance.tolist(), "concept")


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    idx = torch.clamp(torch.searchsorted(xp, x, right=True) - 1, 0, len(xp) - 2)
    x0, x1 = xp[idx], xp[idx + 1]
    w = (x - x0) / (x1 - x0)
    return fp[idx] * (1 - w) + fp[idx + 1] * w
