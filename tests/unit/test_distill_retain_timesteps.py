"""`retain_timesteps`: where the retain term is noised — uniformly, or where the forget term trains.

A recording UNet keeps the timestep of every retain row the student sees; a sampler whose concept distribution
sits on a narrow band of timesteps shows which distribution the retain block was drawn from.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from core.spare.conditioning import Cond
from core.spare.distill import DistillData, distill
from core.spare.samples import SampleSet
from core.spare.specs import SpareConfig
from core.spare.timesteps import TimestepSampler
from tests.unit.recording_unet import RecordingUnet

CHANNELS, N, BATCH, STEPS, T = 4, 8, 4, 100, 1000
BAND = range(700, 720)  # where both concepts' forget timesteps lie


def _banded_sampler() -> TimestepSampler:
    probs = torch.zeros(2, T)
    probs[0, BAND.start:BAND.start + 10] = 0.1  # concept 0 on the band's lower half, concept 1 on its upper
    probs[1, BAND.start + 10:BAND.stop] = 0.1
    return TimestepSampler(probs, [], [], "concept")


def _retain_timesteps(mode: str) -> list[int]:
    unet = RecordingUnet(CHANNELS, BATCH)
    cond = Cond(torch.ones(N, 2, 6))
    data = DistillData(
        forget=SampleSet(torch.zeros(N, CHANNELS, 2, 2), ["c"] * N, ["s"] * N, torch.arange(N) % 2),
        forget_cond=cond, surrogate_cond=cond,
        retain=SampleSet(torch.zeros(N, CHANNELS, 2, 2), ["r"] * N), retain_cond=cond,
    )
    distill(unet, DDPMScheduler(num_train_timesteps=T), data, _banded_sampler(), steps=STEPS, lr=0.01,
            batch_size=BATCH, w_forget=1.0, w_retain=1.0, generator=torch.Generator().manual_seed(0), dtype=None,
            tuner_layers=[unet], retain_timesteps=mode)
    return unet.retain_t


def test_forget_mode_draws_the_retain_term_where_the_forget_term_trains_over_every_concept() -> None:
    drawn = _retain_timesteps("forget")
    assert len(drawn) == STEPS * BATCH
    assert all(t in BAND for t in drawn)
    lower = sum(t < BAND.start + 10 for t in drawn) / len(drawn)
    assert lower == pytest.approx(0.5, abs=0.1), "both concepts' distributions, pooled"


def test_uniform_mode_draws_the_retain_term_over_every_timestep() -> None:
    drawn = _retain_timesteps("uniform")
    outside = sum(t not in BAND for t in drawn) / len(drawn)
    assert outside == pytest.approx(1 - len(BAND) / T, abs=0.03)
    assert min(drawn) < 100 and max(drawn) > 900


def test_the_config_accepts_only_the_two_modes() -> None:
    assert SpareConfig().retain_timesteps in ("uniform", "forget")
    with pytest.raises(ValueError):
        SpareConfig(retain_timesteps="concept")  # type: ignore[arg-type]
