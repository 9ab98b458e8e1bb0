"""The forget term's target with `repel`: the teacher's surrogate prediction extrapolated away from the concept.

A toy UNet whose prediction depends on the conditioning only (base weights frozen, one trainable delta switched
off for the teacher, as LoRA layers are) lets distillation converge to its target exactly, so the learnt
prediction for the forget prompt can be compared with eps_T(s) + repel * (eps_T(s) - eps_T(c)).
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from torch import nn

from core.spare.distill import DistillData, distill
from core.spare.probe import probe_metrics
from core.spare.samples import SampleSet
from core.spare.timesteps import uniform_sampler

CHANNELS, WIDTH = 4, 6


class ToyUnet(nn.Module):
    """eps(x, t, c) = mean_tokens(c) @ (A + enabled * D), broadcast over the latent's pixels."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.base = nn.Parameter(torch.randn(WIDTH, CHANNELS, generator=gen), requires_grad=False)
        self.delta = nn.Parameter(torch.zeros(WIDTH, CHANNELS))
        self.enabled = True

    def enable_adapters(self, enabled: bool) -> None:
        self.enabled = enabled

    def forward(self, x: torch.Tensor, t: torch.Tensor, *, encoder_hidden_states: torch.Tensor,
                added_cond_kwargs: object = None, return_dict: bool = False) -> tuple[torch.Tensor]:
        weight = self.base + self.delta if self.enabled else self.base
        out = encoder_hidden_states.mean(1) @ weight
        return (out[:, :, None, None].expand_as(x),)


def _cond(vector: list[float], n: int):
    from core.spare.conditioning import Cond

    return Cond(torch.tensor(vector).repeat(n, 2, 1))


def _distilled(repel: float) -> tuple[ToyUnet, DistillData]:
    """The toy UNet after distillation with `repel`, converged, and the data it learnt from."""
    unet = ToyUnet()
    n = 4
    concept = [1.0, 0.0, 0.0, 0.5, 0.0, 0.0]
    surrogate = [0.0, 1.0, 0.0, 0.0, 0.5, 0.0]
    retain = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    data = DistillData(
        forget=SampleSet(torch.zeros(n, CHANNELS, 2, 2), ["c"] * n, ["s"] * n, torch.zeros(n, dtype=torch.long)),
        forget_cond=_cond(concept, n), surrogate_cond=_cond(surrogate, n),
        retain=SampleSet(torch.zeros(n, CHANNELS, 2, 2), ["r"] * n), retain_cond=_cond(retain, n),
    )
    log = distill(unet, DDPMScheduler(num_train_timesteps=1000), data, uniform_sampler(1, 1000), steps=400,
                  lr=0.05, batch_size=2, w_forget=1.0, w_retain=1.0, generator=torch.Generator().manual_seed(0),
                  dtype=None, tuner_layers=[unet], repel=repel, retain_timesteps="uniform")
    assert log.forget_loss[-1] < 1e-4
    return unet, data


def _learnt_forget_prediction(repel: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    unet, data = _distilled(repel)
    concept, surrogate = data.forget_cond.hidden[0, 0], data.surrogate_cond.hidden[0, 0]
    with torch.no_grad():
        learnt = concept @ (unet.base + unet.delta)
        return learnt, surrogate @ unet.base, concept @ unet.base


def test_without_repel_the_forget_prompt_learns_the_surrogate() -> None:
    learnt, surrogate, _ = _learnt_forget_prediction(0.0)
    assert torch.allclose(learnt, surrogate, atol=1e-2)


@pytest.mark.parametrize("repel", [1.0, 2.0])
def test_repel_moves_the_forget_target_past_the_surrogate(repel: float) -> None:
    learnt, surrogate, concept = _learnt_forget_prediction(repel)
    expected = surrogate + repel * (surrogate - concept)
    assert torch.allclose(learnt, expected, atol=1e-2)
    assert (learnt - concept).norm() > (surrogate - concept).norm() * (1 + repel) * 0.99


@pytest.mark.parametrize("repel", [0.0, 1.0])
def test_the_gap_closure_is_measured_against_the_target_the_round_trained_toward(repel: float) -> None:
    """A converged round closes its whole gap whatever `repel` is; measured against the surrogate alone, a round
    that repels scores 1 - repel**2 — a perfect η = 1 round would read as no erasure at all."""
    unet, data = _distilled(repel)
    originals = {"delta": torch.zeros_like(unet.delta)}
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    own = probe_metrics(unet, scheduler, data, originals, None, seed=0, concept_names=["c"], repel=repel)
    assert own.forget_gap_closure == pytest.approx(1.0, abs=1e-3)
    assert own.forget_gap_closure_per_concept["c"] == pytest.approx(1.0, abs=1e-3)
    to_surrogate = probe_metrics(unet, scheduler, data, originals, None, seed=0, concept_names=["c"])
    assert to_surrogate.forget_gap_closure == pytest.approx(1 - repel**2, abs=1e-2)
