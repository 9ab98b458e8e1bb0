"""Self-distillation: the adapted student, given the forget prompt, learns what the frozen teacher (the same
UNet with adapters disabled — no second copy) predicts for the surrogate prompt, and matches the teacher on
retain prompts. Both see the same noisy latents. With `repel` > 0 the forget target moves further from the
concept: eps_T(surrogate) + repel * (eps_T(surrogate) - eps_T(concept)), the teacher's guidance from the concept
toward the surrogate extrapolated past the surrogate. With `conflict_projection` a step's forget gradient loses
its component against the retain gradient wherever the two point apart (PCGrad, Yu et al. 2020), so that no step
buys erasure with the kept concepts' loss, to first order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from core.spare.adapters import set_enabled
from core.spare.adversary import ForgetAdversary
from core.spare.conditioning import Cond, unet_eps
from core.spare.errors import ErasureCancelled
from core.spare.samples import SampleSet
from core.spare.timesteps import TimestepSampler


@dataclass
class DistillData:
    forget: SampleSet
    forget_cond: Cond
    surrogate_cond: Cond
    retain: SampleSet
    retain_cond: Cond
    # Teacher generations for each forget sample's surrogate prompt (aligned with `forget`), when used.
    anchors: torch.Tensor | None = None
    anchor_share: float = 0.0
    # Share of the retain term's latents taken from the forget samples (still under retain prompts).
    retain_on_forget: float = 0.0


@dataclass
class TrainLog:
    loss: list[float] = field(default_factory=list)
    forget_loss: list[float] = field(default_factory=list)
    retain_loss: list[float] = field(default_factory=list)
    timesteps: list[int] = field(default_factory=list)
    adversarial_loss: list[float] = field(default_factory=list)
    # Steps whose forget gradient pointed against the retain gradient (projected with `conflict_projection`).
    conflicts: int = 0


def distill(
    unet: nn.Module,
    scheduler: object,
    data: DistillData,
    sampler: TimestepSampler,
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
    batch_size: int,
    w_forget: float,
    w_retain: float,
    generator: torch.Generator,
    dtype: torch.dtype | None,
    tuner_layers: list,
    retain_timesteps: Literal["uniform", "forget"],
    adversary: ForgetAdversary | None = None,
    repel: float = 0.0,
    conflict_projection: bool = False,
    should_stop: Callable[[], bool] | None = None,
    tick: Callable[[int, float], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> TrainLog:
    params = [p for p in unet.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    log = TrainLog()
    device = data.forget.latents.device
    n_f, n_r = data.forget.latents.shape[0], data.retain.latents.shape[0]
    assert data.forget.concept_index is not None
    for step in range(steps):
        if should_stop is not None and should_stop():
            raise ErasureCancelled(f"erasure cancelled at distillation step {step} of {steps}")
        fi = torch.randint(0, n_f, (batch_size,), generator=generator)
        ri = torch.randint(0, n_r, (batch_size,), generator=generator)
        t_f = sampler.sample(data.forget.concept_index[fi], generator)
        if retain_timesteps == "forget":
            # The retain term trains where the forget term does: what the adapter changes there for the concept
            # is held in place for the rest.
            t_r = sampler.pooled(batch_size, generator)
        else:
            t_r = sampler.uniform(batch_size, generator)
        x_f = data.forget.latents[fi.to(device)]
        if data.anchors is not None and data.anchor_share > 0:
            # The erased model, prompted with the concept, should follow the teacher's surrogate trajectory:
            # train on the states of that trajectory too, not only on noised images of the concept.
            use = (torch.rand(batch_size, generator=generator) < data.anchor_share).to(device)
            x_f = torch.where(use[:, None, None, None], data.anchors[fi.to(device)], x_f)
        x_r = data.retain.latents[ri.to(device)]
        if data.retain_on_forget > 0:
            # A kept prompt over an image of the concept must still get the teacher's prediction: the adapter
            # then changes the prediction for what the forget prompt says, not for what the image looks like
            # (a kept concept whose draft drifts toward the concept stays itself).
            use = (torch.rand(batch_size, generator=generator) < data.retain_on_forget).to(device)
            fj = torch.randint(0, n_f, (batch_size,), generator=generator)
            x_r = torch.where(use[:, None, None, None], data.forget.latents[fj.to(device)], x_r)
        noise = torch.randn((2 * batch_size, *x_f.shape[1:]), generator=generator).to(device)
        t = torch.cat([t_f, t_r]).to(device)
        x_t = scheduler.add_noise(torch.cat([x_f, x_r]), noise, t)  # type: ignore[attr-defined]
        forget_cond = data.forget_cond.index(fi)
        teacher_conds = [data.surrogate_cond.index(fi), data.retain_cond.index(ri)]
        if adversary is not None or repel > 0:
            # A third block on the forget latents: the teacher's concept prediction (the adversary's aim, the
            # direction `repel` pushes away from) and, with an adversary, the student under the perturbed forget
            # conditioning.
            x_t, t = torch.cat([x_t, x_t[:batch_size]]), torch.cat([t, t[:batch_size]])
            teacher_conds.append(forget_cond)
        with torch.no_grad():
            set_enabled(tuner_layers, False)
            try:
                target = unet_eps(unet, x_t, t, Cond.cat(teacher_conds), dtype).float()
            finally:
                set_enabled(tuner_layers, True)
        forget_target = target[:batch_size]
        if repel > 0:
            forget_target = forget_target + repel * (forget_target - target[2 * batch_size:])
        student_conds = [forget_cond, data.retain_cond.index(ri)]
        if adversary is not None:
            fd = fi.to(device)
            adversary.refine(unet, x_t[:batch_size], t[:batch_size], forget_cond, fd, target[2 * batch_size:], dtype)
            student_conds.append(adversary.perturbed(forget_cond, fd))
        else:
            x_t, t = x_t[:2 * batch_size], t[:2 * batch_size]
        pred = unet_eps(unet, x_t, t, Cond.cat(student_conds), dtype).float()
        loss_f = nn.functional.mse_loss(pred[:batch_size], forget_target)
        loss_r = nn.functional.mse_loss(pred[batch_size:2 * batch_size], target[batch_size:2 * batch_size])
        forget_part = w_forget * loss_f
        if adversary is not None:
            # The perturbed forget conditioning must also land on the (repelled) surrogate target.
            loss_a = nn.functional.mse_loss(pred[2 * batch_size:], forget_target)
            forget_part = forget_part + w_forget * loss_a
            log.adversarial_loss.append(loss_a.item())
        retain_part = w_retain * loss_r
        loss = forget_part + retain_part
        optim.zero_grad(set_to_none=True)
        if conflict_projection:
            log.conflicts += _deconflicted_backward(params, forget_part, retain_part)
        else:
            loss.backward()
        optim.step()
        if after_step is not None:
            after_step()  # e.g. the retain-span projection of the text-side factors
        log.loss.append(loss.item())
        log.forget_loss.append(loss_f.item())
        log.retain_loss.append(loss_r.item())
        log.timesteps.extend(int(v) for v in t_f.tolist())
        if tick:
            tick(step + 1, log.loss[-1])
    return log


def _deconflicted_backward(params: list[nn.Parameter], forget: torch.Tensor, retain: torch.Tensor) -> bool:
    """Set each parameter's gradient to the retain term's plus the forget term's, the latter without its
    component along the retain gradient when the two point apart. Returns whether they did."""
    g_f = _grads(forget, params, keep_graph=True)
    g_r = _grads(retain, params, keep_graph=False)
    dot = sum((a * b).sum() for a, b in zip(g_f, g_r, strict=True))
    conflict = bool(dot < 0)
    if conflict:
        scale = dot / sum((b * b).sum() for b in g_r)
        g_f = [a - scale * b for a, b in zip(g_f, g_r, strict=True)]
    for p, a, b in zip(params, g_f, g_r, strict=True):
        p.grad = a + b
    return conflict


def _grads(loss: torch.Tensor, params: list[nn.Parameter], *, keep_graph: bool) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, retain_graph=keep_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
