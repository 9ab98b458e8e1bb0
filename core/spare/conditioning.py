"""Text conditioning for the UNet of SD 1.x / 2.x / XL, encoded once per prompt and cached for the run.

The text encoders stay frozen, so every prompt is encoded a single time; training then only runs the UNet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Cond:
    """A batch of UNet conditioning: hidden states plus SDXL's added conditioning when present."""

    hidden: torch.Tensor
    text_embeds: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def index(self, idx: torch.Tensor) -> Cond:
        return Cond(
            self.hidden[idx],
            None if self.text_embeds is None else self.text_embeds[idx],
            None if self.time_ids is None else self.time_ids[idx],
        )

    @staticmethod
    def cat(items: list[Cond]) -> Cond:
        first = items[0]
        return Cond(
            torch.cat([c.hidden for c in items]),
            None if first.text_embeds is None else torch.cat([c.text_embeds for c in items]),  # type: ignore[misc]
            None if first.time_ids is None else torch.cat([c.time_ids for c in items]),  # type: ignore[misc]
        )


def resolution(pipeline: Any) -> int:
    """Pixel size the pipeline generates at by default."""
    return int(pipeline.unet.config.sample_size) * int(pipeline.vae_scale_factor)


class PromptEncoder:
    """Encodes prompts with the pipeline's own encode_prompt (so clip-skip/zeros-for-empty rules match sampling)."""

    def __init__(self, pipeline: Any, arch: str, device: torch.device) -> None:
        self.pipeline = pipeline
        self.arch = arch
        self.device = device
        self._cache: dict[str, Cond] = {}

    @torch.no_grad()
    def _encode_one(self, prompt: str) -> Cond:
        pipe = self.pipeline
        if self.arch == "sdxl":
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
            size = resolution(pipe)
            proj_dim = int(pipe.text_encoder_2.config.projection_dim)
            time_ids = pipe._get_add_time_ids(
                (size, size), (0, 0), (size, size), dtype=embeds.dtype, text_encoder_projection_dim=proj_dim
            ).to(self.device)
            return Cond(embeds.float(), pooled.float(), time_ids.float())
        embeds, _ = pipe.encode_prompt(prompt, self.device, 1, False)
        return Cond(embeds.float())

    def encode(self, prompts: list[str]) -> Cond:
        for p in prompts:
            if p not in self._cache:
                self._cache[p] = self._encode_one(p)
        return Cond.cat([self._cache[p] for p in prompts])


def unet_eps(unet: Any, x: torch.Tensor, t: torch.Tensor, cond: Cond, dtype: torch.dtype | None = None) -> torch.Tensor:
    """One UNet prediction; `dtype` switches on CUDA autocast for the frozen weights."""
    added = None
    if cond.text_embeds is not None:
        added = {"text_embeds": cond.text_embeds, "time_ids": cond.time_ids}
    if dtype is not None and x.device.type == "cuda" and dtype != torch.float32:
        with torch.autocast("cuda", dtype=dtype):
            out = unet(x, t, encoder_hidden_states=cond.hidden, added_cond_kwargs=added, return_dict=False)[0]
        return out.float()
    return unet(x, t, encoder_hidden_states=cond.hidden, added_cond_kwargs=added, return_dict=False)[0]


def training_scheduler(scheduler: Any) -> Any:
    """The forward process the UNet was trained with: a DDPM scheduler on the folder scheduler's betas and
    prediction type, whatever sampler the folder ships. A sampler's own `add_noise` is not q(x_t | x_0) at an
    arbitrary training timestep: Euler-type samplers (SDXL's default, DPM-Solver) noise as x_0 + sigma * eps (the
    UNet sees that only after `scale_model_input`), and look sigma up in the schedule last set for sampling — a
    timestep outside it is not found (IndexError), or, once a pipeline has set the sampler's begin index, every
    timestep gets that schedule's current sigma."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler.config)


def denoise_target(scheduler: Any, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the UNet is trained to predict under the scheduler's parameterization."""
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    return noise
