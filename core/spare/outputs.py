"""What a run leaves behind: before/after images and grid, sha256 of every file, library versions, report.json."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.spare.conditioning import resolution

LIBRARIES = ("torch", "diffusers", "transformers", "peft", "safetensors", "numpy", "pillow", "lethe")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@torch.no_grad()
def generate_images(
    pipeline: Any, prompts: list[str], seeds: list[int], *, steps: int, guidance: float
) -> list[list[Image.Image]]:
    """images[prompt][seed] with fixed CPU generators, so before and after see the same noise."""
    size = resolution(pipeline)
    shape = (pipeline.unet.config.in_channels, size // pipeline.vae_scale_factor, size // pipeline.vae_scale_factor)
    out = []
    for prompt in prompts:
        init = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        result = pipeline(
            [prompt] * len(seeds), num_inference_steps=steps, guidance_scale=guidance,
            latents=init.to(pipeline.unet.device, pipeline.unet.dtype), height=size, width=size, output_type="pil",
        )
        out.append(list(result.images))
    return out


def write_grid(
    prompts: list[str], kinds: list[str], seeds: list[int], before: list[list[Image.Image]],
    after: list[list[Image.Image]], out_path: Path,
) -> Path:
    """grid.png through the evaluation package's renderer (rows = prompts, base | erased × seeds)."""
    from core.evaluation.grid import render_grid

    def stack(images: list[list[Image.Image]]) -> np.ndarray:
        return np.stack([np.asarray(img.convert("RGB")) for row in images for img in row])

    render_grid(stack(before), stack(after), prompts, kinds, seeds).save(out_path)
    return out_path


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str))
