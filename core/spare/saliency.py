"""Gradient saliency: which UNet modules carry the concept.

Per-parameter |dL/dθ| of the denoising loss on forget samples, accumulated over a few batches and summed per
module. The pool of competing modules matters (field notes): ranking every layer type picked proj_in /
conv_shortcut layers whose LoRA could not move the forget loss. The text pathway alone (cross-attention
key/value, 9 modules) left half of a stubborn concept (heart, UA 0.4–0.8). Every attention projection (self-
attention too) erased it, but an adapter on self-attention acts on image features whatever the prompt says: on
held-out phrasings it turned neighbouring concepts into the surrogate as well (testbed, circle → square: hearts
drawn as squares, same-kind retention 0.79–0.83 of base). All cross-attention projections (query, key, value,
output) act only where the text conditions the image and erase as fully there (bench/results/
erasure_testbeds.json: UA 1.000 on all six first-testbed targets, on grid seeds the verification never drew), so
they are the default pool, of which the modules holding 95 % of the saliency get a low-rank (3) adapter. Erase
until verified widens the pool to every attention projection when a round's UA falls short (core.spare.rounds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.spare.conditioning import Cond, denoise_target, unet_eps
from core.spare.errors import ErasureInputError
from core.spare.specs import SpareConfig

_ATTN_PROJ = ("to_q", "to_k", "to_v", "to_out.0")
_BLOCK_PREFIXES = ("down_blocks.", "mid_block.", "up_blocks.")


def is_text_side(name: str) -> bool:
    """Whether a UNet module (full name) is a cross-attention key or value projection: the text pathway, the
    only layers whose input is nothing but the text encoder's states."""
    return ".attn2." in f".{name}" and name.split(".attn2.")[-1] in ("to_k", "to_v")


def candidate_modules(unet: nn.Module, pool: str) -> dict[str, nn.Module]:
    """Full module names (as peft's target_modules take them) of the modules in the saliency pool."""
    out: dict[str, nn.Module] = {}
    for name, module in unet.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        if pool == "all":
            if name.startswith(_BLOCK_PREFIXES):
                out[name] = module
            continue
        is_attn = any(name.endswith(f"{a}.{p}") for a in ("attn1", "attn2") for p in _ATTN_PROJ)
        if not is_attn:
            continue
        cross = ".attn2." in f".{name}"
        if (
            (pool == "cross_kv" and is_text_side(name))
            or (pool == "cross_attention" and cross)
            or pool == "attention"
        ):
            out[name] = module
    return out


@dataclass
class SaliencyResult:
    selected: list[str]
    scores: dict[str, float]
    shares: dict[str, float]
    masks: dict[str, torch.Tensor]
    pool_size: int

    def report(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size,
            "selected": [
                {"module": m, "score": self.scores[m], "share": self.shares[m]} for m in self.selected
            ],
            "selected_share": sum(self.shares[m] for m in self.selected),
            "all_scores": dict(sorted(self.scores.items(), key=lambda kv: -kv[1])),
            "weight_mask_density": (
                {m: float(mask.float().mean()) for m, mask in self.masks.items()} if self.masks else None
            ),
        }


def compute_saliency(
    unet: nn.Module,
    scheduler: Any,
    latents: torch.Tensor,
    cond: Cond,
    config: SpareConfig,
    *,
    dtype: torch.dtype | None,
    generator: torch.Generator,
    tick: Callable[[float], None] | None = None,
) -> SaliencyResult:
    """Accumulate |grad| per weight over `saliency_batches` forget batches; select modules; build masks."""
    pool = candidate_modules(unet, config.saliency_pool)
    if not pool:
        raise ErasureInputError(f"the UNet has no module in the saliency pool {config.saliency_pool!r}")
    device = latents.device
    was_grad = {n: p.requires_grad for n, p in unet.named_parameters()}
    unet.requires_grad_(False)
    for module in pool.values():
        module.weight.requires_grad_(True)
    accum = {name: torch.zeros_like(m.weight, dtype=torch.float32) for name, m in pool.items()}
    n_train = int(scheduler.config.num_train_timesteps)
    try:
        for b in range(config.saliency_batches):
            idx = torch.randint(0, latents.shape[0], (config.batch_size,), generator=generator).to(device)
            x0 = latents[idx]
            noise = torch.randn(x0.shape, generator=generator).to(device)
            t = torch.randint(0, n_train, (x0.shape[0],), generator=generator).to(device)
            x_t = scheduler.add_noise(x0, noise, t)
            pred = unet_eps(unet, x_t, t, cond.index(idx), dtype)
            loss = torch.nn.functional.mse_loss(pred.float(), denoise_target(scheduler, x0, noise, t).float())
            unet.zero_grad(set_to_none=True)
            loss.backward()
            for name, module in pool.items():
                if module.weight.grad is not None:
                    accum[name] += module.weight.grad.detach().abs().float()
            if tick:
                tick((b + 1) / config.saliency_batches)
    finally:
        unet.zero_grad(set_to_none=True)
        for n, p in unet.named_parameters():
            p.requires_grad_(was_grad.get(n, False))

    scores = {name: float(g.sum()) for name, g in accum.items()}
    total = sum(scores.values())
    if total <= 0 or not torch.isfinite(torch.tensor(total)):
        raise ErasureInputError("no module above threshold: the forget loss has no gradient in the saliency pool")
    shares = {name: s / total for name, s in scores.items()}
    ranked = [n for n in sorted(scores, key=lambda n: -scores[n]) if shares[n] > config.min_module_share]
    if not ranked:
        raise ErasureInputError(
            f"no module above threshold: none holds more than min_module_share={config.min_module_share} of saliency"
        )
    if config.top_k is not None:
        selected = ranked[: config.top_k]
    else:
        selected, acc = [], 0.0
        for name in ranked:
            selected.append(name)
            acc += shares[name]
            if acc >= config.saliency_fraction - 1e-12:
                break
    selected = selected[: config.max_modules]

    masks: dict[str, torch.Tensor] = {}
    if config.weight_mask_top_q is not None:
        for name in selected:
            if not isinstance(pool[name], nn.Linear):
                continue  # masks are applied to Linear LoRA only; a Conv module keeps its whole low-rank update
            g = accum[name].flatten()
            k = max(1, round(config.weight_mask_top_q * g.numel()))
            threshold = torch.topk(g, k).values.min()
            masks[name] = (accum[name] >= threshold).to(torch.float32)
    return SaliencyResult(selected, scores, shares, masks, len(pool))
