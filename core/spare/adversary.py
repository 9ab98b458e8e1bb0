"""Adversarial forget conditioning: distil the worst nearby conditioning to the surrogate too.

An erasure that only maps the forget prompt's exact conditioning to the surrogate can be undone by moving the
conditioning a little: a soft-prompt search (the testbed's attack) finds conditioning no text produces under
which the student draws the concept again. This keeps, per forget sample, a perturbation of its conditioning
(persistent across steps, so a few ascent steps per distillation step add up to a long search, as in "free"
adversarial training) that makes the student reproduce the teacher's concept prediction; the distillation
then also maps that perturbed conditioning to the surrogate.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.spare.conditioning import Cond, unet_eps


class ForgetAdversary:
    """Per-forget-sample L∞-bounded perturbations of the hidden conditioning, refined by signed-gradient steps."""

    def __init__(self, forget_cond: Cond, steps: int, radius: float, step_size: float) -> None:
        """`forget_cond`: one row per forget sample (the run's forget conditioning); all start unperturbed."""
        self.steps = steps
        self.radius = radius
        self.step_size = step_size
        self.delta = torch.zeros_like(forget_cond.hidden)

    def perturbed(self, cond: Cond, idx: torch.Tensor) -> Cond:
        return Cond(cond.hidden + self.delta[idx], cond.text_embeds, cond.time_ids)

    def refine(
        self,
        unet: nn.Module,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Cond,
        idx: torch.Tensor,
        concept_eps: torch.Tensor,
        dtype: Any,
    ) -> None:
        """Move each sample's perturbation towards conditioning under which the student predicts the concept."""
        delta = self.delta[idx].clone()
        for _ in range(self.steps):
            delta.requires_grad_(True)
            c = Cond(cond.hidden + delta, cond.text_embeds, cond.time_ids)
            # Per-sample error, summed: each perturbation follows its own sample's gradient at full strength.
            err = (unet_eps(unet, x_t, t, c, dtype).float() - concept_eps).pow(2).flatten(1).mean(1).sum()
            (grad,) = torch.autograd.grad(err, delta)
            delta = (delta.detach() - self.step_size * grad.sign()).clamp(-self.radius, self.radius)
        self.delta[idx] = delta.detach()
