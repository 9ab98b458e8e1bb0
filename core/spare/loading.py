"""Recognize, fingerprint and load a diffusers Stable Diffusion folder (SD 1.x, 2.x, XL) offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from core.pipeline_folder import (  # noqa: F401  (re-exported: the folder rules live there, torch-free)
    _read_json,
    check_safetensors,
    detect_architecture,
    fingerprint,
    pipeline_dir,
    weight_files,
    weights_variant,
)
from core.spare.errors import UnsupportedModelError


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UnsupportedModelError("device 'cuda' was requested but no CUDA device is available")
    return device


def load_pipeline(model_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None) -> Any:
    """Load the folder as a StableDiffusionPipeline or StableDiffusionXLPipeline without touching the network."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    arch = detect_architecture(model_dir)
    model_dir = pipeline_dir(model_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cls = StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline
    check_safetensors(model_dir)
    # Never unpickle: a .bin/.ckpt checkpoint can run code when loaded.
    kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": True}
    variant = weights_variant(model_dir)
    if variant is not None:
        kwargs["variant"] = variant
    target = resolve_device(device)
    if dtype is None and str(target) == "cpu":
        # Weights saved in fp16 (the shipped testbed, many hub checkpoints) cannot run on a CPU: upcast.
        dtype = torch.float32
    if dtype is not None:
        kwargs["dtype"] = dtype
    if arch != "sdxl":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = cls.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise UnsupportedModelError(f"{model_dir} could not be loaded as a {arch} pipeline: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(target)


def architecture_of(pipeline: Any) -> str:
    """The family of an already loaded pipeline (same rules as detect_architecture)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    unet = getattr(pipeline, "unet", None)
    if not isinstance(unet, UNet2DConditionModel):
        raise UnsupportedModelError(
            "the pipeline has no UNet2DConditionModel; Lethe erases Stable Diffusion 1.x/2.x/XL"
        )
    if isinstance(pipeline, StableDiffusionXLPipeline):
        return "sdxl"
    if not isinstance(pipeline, StableDiffusionPipeline):
        raise UnsupportedModelError(f"pipeline class {type(pipeline).__name__} is not supported")
    if unet.config.get("addition_embed_type") is not None:
        raise UnsupportedModelError("a StableDiffusionPipeline UNet with added conditioning is unknown")
    if pipeline.scheduler.config.get("prediction_type") == "v_prediction" or unet.config.get("use_linear_projection"):
        return "sd2"
    return "sd1"
