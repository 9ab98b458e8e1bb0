"""Before/after grid: rows = forget and retain prompts, columns = seeds, base and erased side by side, labelled."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from diffusers import StableDiffusionPipeline
from PIL import Image, ImageDraw, ImageFont

from core.evaluation.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, generate

_LABEL_W = 260
_HEADER_H = 34
_GAP = 16
_PAD = 2


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _clip_text(
    draw: ImageDraw.ImageDraw, text: str, width: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont
) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render_grid(
    base_images: np.ndarray,
    erased_images: np.ndarray,
    prompts: Sequence[str],
    kinds: Sequence[str],
    seeds: Sequence[int],
    cell_px: int = 96,
) -> Image.Image:
    """Compose a labelled grid from images laid out row-major (prompt-major, then seed)."""
    n_rows, n_cols = len(prompts), len(seeds)
    if base_images.shape[0] != n_rows * n_cols or erased_images.shape[0] != n_rows * n_cols:
        raise ValueError("image count must equal len(prompts) * len(seeds)")
    block_w = n_cols * (cell_px + _PAD)
    width = _LABEL_W + 2 * block_w + _GAP
    height = _HEADER_H + n_rows * (cell_px + _PAD)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for b, title in enumerate(("base", "erased")):
        x0 = _LABEL_W + b * (block_w + _GAP)
        draw.text((x0 + 4, 2), title, fill=(0, 0, 0), font=font)
        for c, seed in enumerate(seeds):
            draw.text((x0 + c * (cell_px + _PAD) + 4, 18), f"seed {seed}", fill=(90, 90, 90), font=font)
    for r, (p, kind) in enumerate(zip(prompts, kinds, strict=True)):
        y = _HEADER_H + r * (cell_px + _PAD)
        colour = (180, 20, 20) if kind == "forget" else (20, 110, 40)
        draw.text((4, y + 4), kind.upper(), fill=colour, font=font)
        draw.text((4, y + 20), _clip_text(draw, p, _LABEL_W - 8, font), fill=(0, 0, 0), font=font)
        for b, images in enumerate((base_images, erased_images)):
            x0 = _LABEL_W + b * (block_w + _GAP)
            for c in range(n_cols):
                img = Image.fromarray(images[r * n_cols + c]).resize((cell_px, cell_px), Image.Resampling.NEAREST)
                canvas.paste(img, (x0 + c * (cell_px + _PAD), y))
    return canvas


def before_after_grid(
    base_pipeline: StableDiffusionPipeline,
    erased_pipeline: StableDiffusionPipeline,
    forget_prompts: Sequence[str],
    retain_prompts: Sequence[str],
    seeds: Sequence[int],
    out_path: Path,
    steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    cell_px: int = 96,
) -> Path:
    """Generate every prompt × seed with both pipelines (same seeds) and write the labelled PNG to out_path."""
    prompts = [*forget_prompts, *retain_prompts]
    if not prompts or not seeds:
        raise ValueError("need at least one prompt and one seed")
    kinds = ["forget"] * len(forget_prompts) + ["retain"] * len(retain_prompts)
    flat_prompts = [p for p in prompts for _ in seeds]
    flat_seeds = [int(s) for _ in prompts for s in seeds]
    base = generate(base_pipeline, flat_prompts, flat_seeds, steps=steps, guidance_scale=guidance_scale)
    erased = generate(erased_pipeline, flat_prompts, flat_seeds, steps=steps, guidance_scale=guidance_scale)
    grid = render_grid(base, erased, prompts, kinds, list(seeds), cell_px=cell_px)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out_path, format="PNG")
    return out_path
