"""A stand-in UNet for distillation tests: predicts a trainable constant and records what the student's retain
block was given (each row's mean input and its timestep)."""

from __future__ import annotations

import torch
from torch import nn


class RecordingUnet(nn.Module):
    """Rows `batch`..`2*batch` of each student call (grad enabled; the teacher runs under no_grad) are the retain
    block of `core.spare.distill.distill`."""

    def __init__(self, channels: int, batch: int) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(channels))
        self.batch = batch
        self.retain_rows: list[float] = []  # mean input of each retain row
        self.retain_t: list[int] = []  # timestep of each retain row

    def enable_adapters(self, enabled: bool) -> None:
        pass

    def forward(self, x: torch.Tensor, t: torch.Tensor, *, encoder_hidden_states: torch.Tensor,
                added_cond_kwargs: object = None, return_dict: bool = False) -> tuple[torch.Tensor]:
        if torch.is_grad_enabled():
            block = slice(self.batch, 2 * self.batch)
            self.retain_rows.extend(x[block].mean(dim=(1, 2, 3)).tolist())
            self.retain_t.extend(int(v) for v in t[block].tolist())
        return (x * 0 + self.delta[None, :, None, None],)
