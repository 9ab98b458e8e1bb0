"""ESD baseline (Gandikota et al. 2023), behind the same interface as SPARE.

Each step samples x_t with the model being trained (DDIM from noise to a random step, CFG on the concept),
then fine-tunes so that ε(x_t, t, c) follows ε*(x_t, t) − η(ε*(x_t, t, c) − ε*(x_t, t)), where ε* is the
frozen original. ESD-x trains the cross-attention weights, ESD-u everything else; both write full weights.
The frozen original is evaluated with `torch.func.functional_call` on saved copies of the trained tensors,
so only those tensors (not a whole second UNet) are duplicated. Trained tensors are float32 during training
(bf16 updates vanish below bf16 spacing, field notes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from core.spare.conditioning import Cond, unet_eps
from core.spare.errors import ErasureCancelled


def esd_parameters(unet: nn.Module, train: str) -> dict[str, nn.Parameter]:
    out = {}
    for name, param in unet.named_parameters():
        cross = ".attn2." in name
        if (train == "xattn" and cross) or (train == "noxattn" and not cross):
            out[name] = param
    return out


@dataclass
class EsdLog:
    loss: list[float] = field(default_factory=list)
    timesteps: list[int] = field(default_factory=list)


def esd_train(
    pipeline: Any,
    params: dict[str, nn.Parameter],
    originals: dict[str, torch.Tensor],
    concept_cond: Cond,
    uncond: Cond,
    *,
    steps: int,
    lr: float,
    eta: float,
    batch_size: int,
    ddim_steps: int,
    start_guidance: float,
    generator: torch.Generator,
    dtype: torch.dtype | None,
    should_stop: Callable[[], bool] | None = None,
    tick: Callable[[int, float], None] | None = None,
) -> EsdLog:
    from diffusers import DDIMScheduler

    unet = pipeline.unet
    device = unet.device
    sched = DDIMScheduler.from_config(pipeline.scheduler.config)
    sched.set_timesteps(ddim_steps, device=device)
    size = int(unet.config.sample_size)
    channels = int(unet.config.in_channels)
    optim = torch.optim.Adam(list(params.values()), lr=lr)
    log = EsdLog()
    n_concept = concept_cond.hidden.shape[0]
    for step in range(steps):
        if should_stop is not None and should_stop():
            raise ErasureCancelled(f"erasure cancelled at ESD step {step} of {steps}")
        ci = torch.randint(0, n_concept, (batch_size,), generator=generator)
        c = concept_cond.index(ci.to(device))
        u = uncond.index(torch.zeros(batch_size, dtype=torch.long, device=device))
        t_enc = int(torch.randint(0, ddim_steps, (1,), generator=generator))
        x = torch.randn((batch_size, channels, size, size), generator=generator).to(device) * sched.init_noise_sigma
        with torch.no_grad():
            for t_val in sched.timesteps[:t_enc]:
                t_b = t_val.expand(batch_size)
                out = unet_eps(unet, torch.cat([x, x]), torch.cat([t_b, t_b]), Cond.cat([u, c]), dtype).float()
                e_u, e_c = out.chunk(2)
                x = sched.step(e_u + start_guidance * (e_c - e_u), t_val, x).prev_sample
            t = sched.timesteps[t_enc].expand(batch_size)
            frozen = {n: originals[n] for n in params}
            added = None if c.text_embeds is None else "sdxl"
            both = Cond.cat([u, c])
            kwargs: dict[str, Any] = {"encoder_hidden_states": both.hidden, "return_dict": False}
            if added:
                kwargs["added_cond_kwargs"] = {"text_embeds": both.text_embeds, "time_ids": both.time_ids}
            if dtype is not None and device.type == "cuda" and dtype != torch.float32:
                with torch.autocast("cuda", dtype=dtype):
                    ref = functional_call(unet, frozen, (torch.cat([x, x]), torch.cat([t, t])), kwargs)[0].float()
            else:
                ref = functional_call(unet, frozen, (torch.cat([x, x]), torch.cat([t, t])), kwargs)[0].float()
            e0, ep = ref.chunk(2)
            target = e0 - eta * (ep - e0)
        pred = unet_eps(unet, x, t, c, dtype).float()
        loss = nn.functional.mse_loss(pred, target)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        log.loss.append(loss.item())
        log.timesteps.extend(int(v) for v in t.tolist())
        if tick:
            tick(step + 1, log.loss[-1])
    return log
