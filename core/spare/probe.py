"""Noise-space diagnostics of an erasure on a fixed batch of its training samples (core.spare.report.ProbeMetrics)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from core.spare.conditioning import Cond, unet_eps
from core.spare.distill import DistillData
from core.spare.report import ProbeMetrics


@torch.no_grad()
def probe_metrics(
    unet: nn.Module, scheduler: Any, data: DistillData, originals: dict[str, torch.Tensor], dtype: torch.dtype | None,
    seed: int, concept_names: list[str], repel: float = 0.0,
) -> ProbeMetrics:
    """Erased UNet (weights in place) vs the original tensors.

    forget_gap: ‖ε_erased(x_t, c_forget) − target‖² (0 = the concept fully mapped where the erasure trained it),
    with base_forget_gap the same for the unerased model; the target is the forget term's own,
    ε_base(c_surrogate) + repel · (ε_base(c_surrogate) − ε_base(c_forget)) — with repel = 0 the surrogate's
    prediction. Measured against the surrogate alone, a round that repels would score 1 − repel² at best.
    retain_drift: ‖ε_erased(c_r) − ε_base(c_r)‖².
    """
    gen = torch.Generator().manual_seed(seed + 7)
    device = data.forget.latents.device
    n = min(32, data.forget.latents.shape[0])
    m = min(16, data.retain.latents.shape[0])
    fi = torch.randperm(data.forget.latents.shape[0], generator=gen)[:n]
    ri = torch.randperm(data.retain.latents.shape[0], generator=gen)[:m]
    x0 = torch.cat([data.forget.latents[fi.to(device)], data.retain.latents[ri.to(device)]])
    noise = torch.randn(x0.shape, generator=gen).to(device)
    t = torch.randint(0, int(scheduler.config.num_train_timesteps), (n + m,), generator=gen).to(device)
    x_t = scheduler.add_noise(x0, noise, t)
    student = Cond.cat([data.forget_cond.index(fi), data.retain_cond.index(ri)])
    teacher = Cond.cat([data.surrogate_cond.index(fi), data.retain_cond.index(ri)])

    def base(cond: Cond) -> torch.Tensor:
        kwargs: dict[str, Any] = {"encoder_hidden_states": cond.hidden, "return_dict": False}
        if cond.text_embeds is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": cond.text_embeds, "time_ids": cond.time_ids}
        return functional_call(unet, originals, (x_t, t), kwargs)[0].float()

    erased = unet_eps(unet, x_t, t, student, dtype).float()
    base_student, base_teacher = base(student), base(teacher)
    target = base_teacher[:n] + repel * (base_teacher[:n] - base_student[:n])
    gap = ((erased[:n] - target) ** 2).mean()
    base_gap = ((base_student[:n] - target) ** 2).mean()
    drift = ((erased[n:] - base_teacher[n:]) ** 2).mean()
    scale = (base_teacher[n:] ** 2).mean()
    per_concept: dict[str, float] = {}
    assert data.forget.concept_index is not None
    concept_of = data.forget.concept_index[fi]
    for c, name in enumerate(concept_names):
        sel = (concept_of == c).to(device)
        if bool(sel.any()):
            g = ((erased[:n][sel] - target[sel]) ** 2).mean()
            b = ((base_student[:n][sel] - target[sel]) ** 2).mean()
            per_concept[name] = float(1 - g / b) if float(b) > 0 else 0.0
    return ProbeMetrics(
        forget_gap_closure_per_concept=per_concept,
        base_forget_gap=float(base_gap),
        forget_gap=float(gap),
        forget_gap_closure=float(1 - gap / base_gap) if float(base_gap) > 0 else 0.0,
        retain_drift=float(drift),
        retain_drift_relative=float(drift / scale) if float(scale) > 0 else 0.0,
    )
