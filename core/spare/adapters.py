"""Sparse LoRA on the salient modules: attach, mask, export (diffusers and kohya layouts), turn into weight deltas.

The files themselves are written by core.spare.outputs."""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict
from torch import nn

ADAPTER_NAME = "lethe_erasure"


def rank_pattern(selected: list[str], shares: dict[str, float], rank: int, follow: bool) -> dict[str, int]:
    """Rank per module: the top module gets `rank`; others scale with their saliency share (at least 1)."""
    if not follow or not selected:
        return {}
    top = max(shares[m] for m in selected)
    return {m: max(1, round(rank * shares[m] / top)) for m in selected}


def attach(unet: nn.Module, modules: list[str], rank: int, alpha: float | None, ranks: dict[str, int]) -> LoraConfig:
    """peft LoRA on exactly `modules` (full names); factors kept in float32 whatever the base dtype."""
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        target_modules=modules,
        rank_pattern=ranks,
        alpha_pattern={m: (alpha if alpha is not None else r) for m, r in ranks.items()},
        init_lora_weights=True,
    )
    unet.add_adapter(config, adapter_name=ADAPTER_NAME)
    for name, param in unet.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
        else:
            param.requires_grad_(False)
    return config


def lora_layers(unet: nn.Module) -> dict[str, LoraLayer]:
    return {name: m for name, m in unet.named_modules() if isinstance(m, LoraLayer)}


def set_enabled(layers: list[BaseTunerLayer], enabled: bool) -> None:
    """Switch the adapters on or off (off = the frozen teacher, exactly the base model)."""
    for layer in layers:
        layer.enable_adapters(enabled)


class WeightMasks:
    """Restricts each masked Linear LoRA update to a per-weight mask: adds (M - 1) ⊙ ΔW to the output."""

    def __init__(self, unet: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        self.masks = masks
        self._handles = []
        layers = lora_layers(unet)
        for name, mask in masks.items():
            layer = layers[name]
            self._handles.append(layer.register_forward_hook(self._hook(mask)))

    @staticmethod
    def _hook(mask: torch.Tensor) -> Any:
        def hook(module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            if module.disable_adapters or ADAPTER_NAME not in module.active_adapters:
                return output
            delta = module.get_delta_weight(ADAPTER_NAME)
            x = inputs[0].to(delta.dtype)
            return output + nn.functional.linear(x, (mask.to(delta.device) - 1.0) * delta).to(output.dtype)

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def deltas(unet: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ΔW per adapted module (masked where a mask exists), in float32."""
    out: dict[str, torch.Tensor] = {}
    for name, layer in lora_layers(unet).items():
        delta = layer.get_delta_weight(ADAPTER_NAME).detach().float()
        if name in masks:
            delta = delta * masks[name].to(delta.device)
        out[name] = delta
    return out


def diffusers_state(unet: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The adapter as diffusers' LoRA state dict (float32, CPU) and the peft metadata that belongs with it.

    Without the metadata, load_lora_weights assumes alpha = rank and the outputs change.
    """
    from diffusers.utils import convert_state_dict_to_diffusers

    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=ADAPTER_NAME))
    state = {k: v.detach().float().contiguous().cpu() for k, v in state.items()}
    return state, unet.peft_config[ADAPTER_NAME].to_dict()


def kohya_state(unet: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter in kohya-ss layout: `lora_unet_<module path with _>.{lora_down,lora_up}.weight` plus an
    `.alpha` scalar per module (kohya scales by alpha / rank, as peft does; the alpha is each module's own).
    """
    out: dict[str, torch.Tensor] = {}
    for name, layer in lora_layers(unet).items():
        if ADAPTER_NAME not in layer.lora_A:
            continue
        key = "lora_unet_" + name.replace(".", "_")
        out[f"{key}.lora_down.weight"] = layer.lora_A[ADAPTER_NAME].weight.detach().float().contiguous().cpu()
        out[f"{key}.lora_up.weight"] = layer.lora_B[ADAPTER_NAME].weight.detach().float().contiguous().cpu()
        out[f"{key}.alpha"] = torch.tensor(float(layer.lora_alpha[ADAPTER_NAME]), dtype=torch.float32)
    return out


def keep_only(unet: nn.Module, modules: list[str], rank: int, alpha: float | None,
              ranks: dict[str, int]) -> LoraConfig:
    """Re-attach the adapter on `modules` alone, with the factors it learnt there: the change elsewhere is dropped
    and the adapter files, the deltas and the fused model then hold only these modules."""
    layers = lora_layers(unet)
    factors = {m: (layers[m].lora_A[ADAPTER_NAME].weight.detach().clone(),
                   layers[m].lora_B[ADAPTER_NAME].weight.detach().clone()) for m in modules}
    detach(unet)
    config = attach(unet, modules, rank, alpha, {m: r for m, r in ranks.items() if m in factors})
    with torch.no_grad():
        for name, layer in lora_layers(unet).items():
            down, up = factors[name]
            layer.lora_A[ADAPTER_NAME].weight.copy_(down)
            layer.lora_B[ADAPTER_NAME].weight.copy_(up)
    return config


def detach(unet: nn.Module) -> None:
    """Remove the peft layers and restore the plain modules (weights untouched)."""
    unet.unload_lora()
