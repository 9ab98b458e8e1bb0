"""`retain_on_forget`: the retain term also sees the forget samples' latents, under the retain prompts.

A recording UNet and timestep 0 (where a noised latent is its clean latent to within 1 %) show which clean
latents each block of the distillation batch was noised from: the forget block from the forget samples, the
retain block from the retain samples, or, for the requested share of it, from the forget samples.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from core.spare.conditioning import Cond
from core.spare.distill import DistillData, distill
from core.spare.samples import SampleSet
from tests.unit.recording_unet import RecordingUnet

CHANNELS, N, BATCH, STEPS = 4, 8, 4, 200
CONCEPT, KEPT = 3.0, -3.0  # every pixel of a forget / a retain sample


class AtZero:
    """Every timestep 0: the noised latent is the clean one (DDPM's alpha_bar_0 = 0.9999)."""

    def sample(self, concept_index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(concept_index.shape[0], dtype=torch.long)

    def uniform(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.long)


def _retain_inputs(share: float) -> list[float]:
    unet = RecordingUnet(CHANNELS, BATCH)
    cond = Cond(torch.ones(N, 2, 6))
    data = DistillData(
        forget=SampleSet(torch.full((N, CHANNELS, 2, 2), CONCEPT), ["c"] * N, ["s"] * N,
                         torch.zeros(N, dtype=torch.long)),
        forget_cond=cond, surrogate_cond=cond,
        retain=SampleSet(torch.full((N, CHANNELS, 2, 2), KEPT), ["r"] * N), retain_cond=cond,
        retain_on_forget=share,
    )
    distill(unet, DDPMScheduler(num_train_timesteps=1000), data, AtZero(), steps=STEPS, lr=0.01,  # type: ignore[arg-type]
            batch_size=BATCH, w_forget=1.0, w_retain=1.0, generator=torch.Generator().manual_seed(0), dtype=None,
            tuner_layers=[unet], retain_timesteps="uniform")
    return unet.retain_rows


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
def test_the_retain_block_takes_its_share_of_forget_latents(share: float) -> None:
    rows = _retain_inputs(share)
    assert len(rows) == STEPS * BATCH
    from_forget = [r for r in rows if abs(r - CONCEPT) < 0.1]
    from_retain = [r for r in rows if abs(r - KEPT) < 0.1]
    assert len(from_forget) + len(from_retain) == len(rows), "each row is one sample or the other, noised at t=0"
    assert len(from_forget) / len(rows) == pytest.approx(share, abs=0.05)
