"""What a run leaves behind: before/after images and grid, sha256 of every file, library versions, report.json."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

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


def compose_grid(
    prompts: list[str], kinds: list[str], before: list[list[Image.Image]], after: list[list[Image.Image]],
    cell: int = 96,
) -> Image.Image:
    """Rows = prompts (forget rows first); columns = before × seeds | after × seeds; labels on the left."""
    n_seeds = len(before[0]) if before else 0
    label_w, head_h = 240, 18
    width = label_w + cell * n_seeds * 2 + 8
    grid = Image.new("RGB", (width, head_h + cell * len(prompts)), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((label_w + 4, 2), "before", fill="black")
    draw.text((label_w + cell * n_seeds + 12, 2), "after", fill="black")
    for r, (prompt, kind) in enumerate(zip(prompts, kinds, strict=True)):
        y = head_h + r * cell
        draw.text((4, y + cell // 2 - 12), f"[{kind}]", fill="red" if kind == "forget" else "green")
        draw.text((4, y + cell // 2), (prompt or "<empty prompt>")[:38], fill="black")
        for s in range(n_seeds):
            grid.paste(before[r][s].resize((cell, cell), Image.Resampling.NEAREST), (label_w + s * cell, y))
            right = label_w + (n_seeds + s) * cell + 8
            grid.paste(after[r][s].resize((cell, cell), Image.Resampling.NEAREST), (right, y))
    return grid


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str))
