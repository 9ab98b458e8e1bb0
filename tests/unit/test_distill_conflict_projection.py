"""`conflict_projection`: a step's forget gradient loses its component against the retain gradient.

A two-parameter stand-in UNet whose adapted prediction is the teacher's plus delta . phi(prompt): the forget prompt
(phi = (1, 1)) must move by +1 to reach the surrogate's prediction, the retain prompt (phi = (1, 0)) must not
move. Both can be met (delta = (0, 1)), but the forget gradient alone also pushes delta[0], which the retain
prompt pays for. Projected, the forget term stops pushing delta[0] as soon as the retain term resists it.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from torch import nn

from core.spare.conditioning import Cond
from core.spare.distill import DistillData, TrainLog, distill
from core.spare.samples import SampleSet

N, BATCH, STEPS = 4, 4, 60


class LinearShiftUnet(nn.Module):
    """Prediction = the teacher's value (hidden[:, 0, 2]) plus, with the adapter on, delta . hidden[:, 0, :2]."""

    def __init__(self) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(2))
        self.enabled = True

    def enable_adapters(self, enabled: bool) -> None:
        self.enabled = enabled

    def forward(self, x: torch.Tensor, t: torch.Tensor, *, encoder_hidden_states: torch.Tensor,
                added_cond_kwargs: object = None, return_dict: bool = False) -> tuple[torch.Tensor]:
        h = encoder_hidden_states[:, 0]
        value = h[:, 2] + (h[:, :2] @ self.delta if self.enabled else 0.0)
        return (x * 0 + value[:, None, None, None],)


class Uniform:
    def sample(self, concept_index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, 1000, (concept_index.shape[0],), generator=generator)

    def uniform(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, 1000, (n,), generator=generator)


def _cond(phi: tuple[float, float], teacher: float) -> Cond:
    return Cond(torch.tensor([[[phi[0], phi[1], teacher]]]).expand(N, 1, 3).clone())


def _train(projected: bool, forget_phi: tuple[float, float] = (1.0, 1.0),
           steps: int = STEPS) -> tuple[LinearShiftUnet, TrainLog]:
    unet = LinearShiftUnet()
    latents = torch.zeros(N, 1, 2, 2)
    data = DistillData(
        forget=SampleSet(latents, ["c"] * N, ["s"] * N, torch.zeros(N, dtype=torch.long)),
        forget_cond=_cond(forget_phi, 0.0), surrogate_cond=_cond((0.0, 0.0), 1.0),
        retain=SampleSet(latents, ["r"] * N), retain_cond=_cond((1.0, 0.0), 0.0),
    )
    log = distill(unet, DDPMScheduler(num_train_timesteps=1000), data, Uniform(), steps=steps, lr=0.05,  # type: ignore[arg-type]
                  batch_size=BATCH, w_forget=1.0, w_retain=1.0, generator=torch.Generator().manual_seed(0),
                  dtype=None, tuner_layers=[unet], retain_timesteps="uniform", conflict_projection=projected)
    return unet, log


def test_projected_steps_keep_the_retain_loss_down_and_still_erase() -> None:
    plain_unet, plain = _train(projected=False)
    proj_unet, proj = _train(projected=True)
    assert plain.conflicts == 0, "without the projection nothing is counted"
    assert proj.conflicts > STEPS // 2, "the forget term pushes delta[0], which the retain term resists"
    # The retain prompt's prediction is moved by delta[0] only.
    assert abs(float(proj_unet.delta[0].detach())) < abs(float(plain_unet.delta[0].detach())) / 2
    assert sum(proj.retain_loss) < sum(plain.retain_loss) / 2
    # The erasure is not given up: the forget prompt reaches the surrogate's prediction.
    assert float(proj_unet.delta.detach().sum()) > 0.9
    assert proj.forget_loss[-1] < 0.01


def test_without_conflict_the_projected_step_is_the_plain_step() -> None:
    """Retain prompt orthogonal to the forget prompt's change: the gradients never point apart, and the two
    runs take the same steps."""
    (plain_unet, plain), (proj_unet, proj) = (_train(p, forget_phi=(0.0, 1.0), steps=20) for p in (False, True))
    assert plain.conflicts == proj.conflicts == 0
    assert torch.allclose(proj_unet.delta.detach(), plain_unet.delta.detach(), atol=1e-7)
