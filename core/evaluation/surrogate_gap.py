"""How far the base model must move a concept's prediction to draw a candidate surrogate instead.

An erasure distils the target's prompts to the teacher's prediction for the surrogate; the adapter that does so
also reaches the concepts that share the target's features, and the farther the surrogate's prediction lies from
the target's, the larger that change (measured on a development model: bench/surrogate_gap.py). The gap is the
mean squared difference between the base model's noise predictions for the target's held-out phrasings and for
the same phrasings with the candidate in the target's place, on noisy latents of the base model's own draws of
the target, at a few timesteps across the schedule. It needs no judge: a few UNet calls per candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from core.evaluation.vocabulary import Vocabulary
from core.spare.conditioning import PromptEncoder, training_scheduler, unet_eps
from core.spare.loading import architecture_of
from core.spare.prompting import untruncated
from core.spare.samples import generate_latents, mentions, swapped

TIMESTEP_SHARES = (0.1, 0.3, 0.5, 0.7, 0.9)  # where in the schedule the predictions are compared


@torch.no_grad()
def noise_gaps(base: Any, vocabulary: Vocabulary, *, kind: str, target: str, candidates: Sequence[str],
               prompts: int = 4, steps: int = 10, guidance_scale: float = 5.0, seed: int = 610_000) -> dict[str, float]:
    """candidate -> the gap between the base model's predictions for `target` and for it (see the module):
    `prompts` of the target's held-out phrasings that fit the model's context, one draw each from `seed`."""
    phrasings = untruncated(vocabulary.with_concepts(kind, [target]).heldout_prompts(kind, target),
                            getattr(base, "tokenizer", None))
    phrasings = [p for p in phrasings if mentions(p, target)][:prompts]
    if not phrasings:
        raise ValueError(f"no held-out phrasing of {target!r} fits the model")
    unet = base.unet
    device = unet.device
    latents = generate_latents(base, phrasings, seed=seed, steps=steps, guidance=guidance_scale, per_prompt=1)
    encoder = PromptEncoder(base, architecture_of(base), device)
    own = encoder.encode(phrasings)
    noising = training_scheduler(base.scheduler)
    n_train = int(noising.config.num_train_timesteps)
    generator = torch.Generator().manual_seed(seed)
    noisy = []
    for share in TIMESTEP_SHARES:
        t = torch.full((latents.shape[0],), int(share * (n_train - 1)), dtype=torch.long, device=device)
        noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
        x_t = noising.add_noise(latents, noise, t)
        noisy.append((x_t, t, unet_eps(unet, x_t, t, own).float()))
    gaps: dict[str, float] = {}
    for candidate in candidates:
        cond = encoder.encode([swapped(p, target, candidate) for p in phrasings])
        total = sum(float(((unet_eps(unet, x_t, t, cond).float() - eps) ** 2).mean()) for x_t, t, eps in noisy)
        gaps[candidate] = total / len(noisy)
    return gaps
