"""Deterministic batched generation with any diffusers Stable Diffusion pipeline (one seed per image)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 5.0


@torch.no_grad()
def generate(
    pipeline: StableDiffusionPipeline,
    prompts: Sequence[str],
    seeds: Sequence[int],
    steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    batch_size: int = 128,
    prompt_embeds: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Images (N×H×W×3 uint8) for aligned prompts and seeds. Image i depends only on (prompt i, seed i), with
    any sampler: the initial noise and a stochastic sampler's step noise both come from seed i's generator.

    `prompt_embeds` (N×T×D) replaces the prompts' text embeddings (used by the adversarial probe and the
    evaluator's construction tests); prompts are then only labels.
    """
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    pipeline.set_progress_bar_config(disable=True)
    device = pipeline.device
    out: list[np.ndarray] = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        gens, latents = seeded_noise(pipeline, seeds[chunk])
        kwargs: dict = {}
        if prompt_embeds is not None:
            embeds = prompt_embeds[chunk].to(device=device, dtype=pipeline.text_encoder.dtype)
            kwargs["prompt_embeds"] = embeds
            if guidance_scale > 1.0:
                neg, _ = pipeline.encode_prompt([""], device, 1, False)
                kwargs["negative_prompt_embeds"] = neg.expand(len(embeds), -1, -1)
        else:
            kwargs["prompt"] = list(prompts[chunk])
        images = pipeline(
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            latents=latents,
            generator=gens,
            output_type="np",
            **kwargs,
        ).images
        out.append((np.clip(images, 0, 1) * 255).round().astype(np.uint8))
        if progress is not None:
            progress(min(start + batch_size, len(prompts)), len(prompts))
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), dtype=np.uint8)


def seeded_noise(pipeline: Any, seeds: Sequence[int]) -> tuple[list[torch.Generator], torch.Tensor]:
    """One CPU generator per image and the initial latents drawn from it, on the UNet's device and dtype. Every
    seeded draw passes both to the pipeline (`latents=`, `generator=`): image i's starting noise and, with a
    stochastic sampler (Euler ancestral, DDPM), its step noise then come from seed i alone, whatever else is in
    the batch."""
    gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    size = pipeline.unet.config.sample_size
    shape = (pipeline.unet.config.in_channels, size, size)
    latents = torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in gens])
    return gens, latents.to(device=pipeline.unet.device, dtype=pipeline.unet.dtype)
