"""Retain-span projection: the text side of the adapter leaves what the retain prompts say alone.

A cross-attention key/value projection sees nothing but the text encoder's states. Its LoRA update is
B·A·h; when the rows of A lie in the orthogonal complement of the subspace that holds `energy` of the retain
prompts' states (principal directions of every token state of the retain prompts, the surrogate prompts and the
empty prompt that classifier-free guidance draws with), the keys and values of those prompts move by at most
the remaining share, while a forget prompt keeps what sets it apart from them: the part of its states outside
that subspace. The erasure then changes less of what must stay, whatever retain weight the loss gives it.

Image-side projections (query, output) see image features, which no text subspace describes: they are left
as they are. A is projected once when the adapter is attached and after every optimizer step (projected
gradient descent), so the adapter that is saved is an ordinary LoRA any diffusers user can load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft.tuners.lora import LoraLayer

from core.spare.adapters import ADAPTER_NAME
from core.spare.saliency import is_text_side


def retain_complement(states: torch.Tensor, energy: float) -> tuple[torch.Tensor, int]:
    """(P, k): the projector onto the orthogonal complement of the top-k principal directions of `states`
    (..., d), k the fewest directions holding `energy` of their (uncentred) energy."""
    flat = states.reshape(-1, states.shape[-1]).double()
    _, sv, vh = torch.linalg.svd(flat, full_matrices=False)
    share = (sv**2).cumsum(0) / (sv**2).sum().clamp_min(1e-30)
    k = min(int((share < energy).sum().item()) + 1, vh.shape[0])
    basis = vh[:k].T  # d x k
    eye = torch.eye(flat.shape[-1], dtype=torch.float64)
    return (eye - basis @ basis.T).float(), k


@dataclass
class RetainProjection:
    """The down-projections of the adapter's text-side LoRA layers, held to the retain states' complement."""

    energy: float
    projector: torch.Tensor  # d x d, on the factors' device and in their dtype
    directions: int  # the retain subspace's dimension (what the adapter cannot change)
    weights: dict[str, torch.Tensor]  # module name -> its LoRA A weight (rank x d)

    @classmethod
    def build(cls, layers: dict[str, LoraLayer], states: torch.Tensor, energy: float) -> RetainProjection:
        projector, k = retain_complement(states, energy)
        width = projector.shape[0]
        weights = {name: layer.lora_A[ADAPTER_NAME].weight for name, layer in layers.items()
                   if is_text_side(name) and ADAPTER_NAME in layer.lora_A
                   and layer.lora_A[ADAPTER_NAME].weight.shape[-1] == width}
        first = next(iter(weights.values()), None)
        if first is not None:
            projector = projector.to(first.device, first.dtype)  # once, not on every step
        return cls(energy, projector, k, weights)

    @torch.no_grad()
    def apply(self) -> None:
        for a in self.weights.values():
            a.copy_(a @ self.projector)

    def report(self) -> dict[str, float | int | list[str]]:
        return {"energy": self.energy, "directions": self.directions, "width": int(self.projector.shape[0]),
                "modules": sorted(self.weights)}
