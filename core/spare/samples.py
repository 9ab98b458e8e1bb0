"""Forget and retain samples: prompts that place each concept in varied contexts, and their latents.

Training on the bare concept word did not generalize (field notes: UA 0.125); the forget prompts therefore
compose the target with templates of its kind, the request's own prompts and contexts taken from the retain
prompts. Given the model's tokenizer (core.spare.prompting.Tokens), generic templates and neutral prompts are
used only where the tokenizer knows every word and the prompt fits its context, and the words a context
template adds are dropped where it does not. Latents come from example images when given, else from the
frozen model's own generations.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from core.evaluation.sampling import seeded_noise
from core.spare.base_outputs import DrawKey, drawn
from core.spare.conditioning import resolution
from core.spare.errors import ErasureInputError
from core.spare.specs import ConceptSpec, ErasureSpec

if TYPE_CHECKING:
    from core.spare.prompting import Tokens

TEMPLATES: dict[str, list[str]] = {
    "object": [
        "a photo of a {t}", "an image of a {t}", "a painting of a {t}", "a {t}", "a drawing of a {t}",
        "a close-up picture of a {t}", "a {t} in the middle of the picture", "two {t}s side by side",
    ],
    "style": [
        "an image in {t} style", "a painting in the style of {t}", "a landscape in {t} style",
        "a portrait in {t} style", "a still life in {t} style", "a city street in {t} style", "{t} style artwork",
    ],
    "identity": [
        "a photo of {t}", "a portrait of {t}", "{t} smiling", "a painting of {t}", "{t} at an event",
        "a close-up photo of {t}'s face",
    ],
    "custom": ["{t}", "an image of {t}", "a picture showing {t}", "{t}, detailed"],
}

# Kind-specific ways to put the concept into a retain prompt's scene.
CONTEXT_TEMPLATES: dict[str, str] = {
    "object": "{r}, with a {t}",
    "style": "{r}, in {t} style",
    "identity": "{r}, with {t}",
    "custom": "{r}, {t}",
}

NEUTRAL_RETAIN = ["a photo", "an image", "a painting", "a picture of a room", ""]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _whole_word(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)


def mentions(prompt: str, word: str) -> bool:
    """Whether `prompt` holds the whole word `word` (any case); an empty word is in no prompt."""
    return bool(word.strip()) and _whole_word(word).search(prompt) is not None


def swapped(prompt: str, word: str, replacement: str) -> str:
    """`prompt` with the whole word `word` (any case) replaced by `replacement`."""
    return _clean(_whole_word(word).sub(replacement, prompt))


def surrogate_prompt(prompt: str, concept: ConceptSpec) -> str:
    """The forget prompt with the target replaced by the surrogate (or the surrogate alone if absent)."""
    pattern = re.compile(re.escape(concept.target), re.IGNORECASE)
    if pattern.search(prompt):
        return _clean(pattern.sub(concept.surrogate_text(), prompt))
    return _clean(concept.surrogate_text())


def forget_prompts(concept: ConceptSpec, retain: list[str], limit: int, tokens: Tokens | None = None) -> list[str]:
    """Given prompts first, then kind templates, then the target placed into retain contexts.

    With `tokens`, a template with a word the tokenizer does not know is skipped, a context template's unknown
    words are dropped, and a prompt longer than the context is skipped — as is one whose surrogate prompt (the
    teacher's target for it) would be: a surrogate with more tokens than the target would be cut off there."""

    def surrogate_fits(text: str) -> bool:
        return tokens is None or tokens.fits(surrogate_prompt(text, concept))

    out: list[str] = []
    for p in concept.prompts:
        out.append(_clean(p))
    for tpl in TEMPLATES[concept.kind]:
        text = tpl.format(t=concept.target)
        if tokens is None or (tokens.usable(text, concept.target) and surrogate_fits(text)):
            out.append(text)
    ctx = CONTEXT_TEMPLATES[concept.kind]
    if tokens is not None:
        ctx = tokens.connector(ctx, concept.target)
    for r in retain:
        if not r.strip():
            continue
        text = _clean(ctx.format(r=r, t=concept.target))
        if tokens is None or (tokens.fits(text) and surrogate_fits(text)):
            out.append(text)
    seen: set[str] = set()
    unique = [p for p in out if not (p in seen or seen.add(p))]
    return unique[:limit]


def retain_prompts(spec: ErasureSpec, limit: int, tokens: Tokens | None = None) -> list[str]:
    """The request's retain prompts (minus any that mention a target), plus neutral ones the tokenizer knows
    and the empty prompt."""
    targets = [c.target.lower() for c in spec.concepts]
    given = [_clean(r) for r in spec.retain if not any(t in r.lower() for t in targets)]
    neutral = [n for n in NEUTRAL_RETAIN if not n or tokens is None or tokens.usable(n)]
    out = given + [n for n in neutral if n not in given]
    # The empty prompt always stays: classifier-free guidance depends on the unconditional prediction.
    out = out[: max(1, limit - 1)] + ([""] if "" not in out[: max(1, limit - 1)] else [])
    return out


def neighbour_prompts(spec: ErasureSpec, forget: dict[str, list[str]], per_prompt: int) -> list[str]:
    """Retain prompts in the forget prompts' own phrasings: each forget prompt with its target swapped for
    `per_prompt` of the concept's neighbours in turn. Without them the retain set speaks in other phrasings than
    the forget set, and the surrogate leaks into the neighbours wherever a phrasing only ever meant "forget"."""
    if per_prompt <= 0:
        return []
    targets = [c.target.lower() for c in spec.concepts]
    out: list[str] = []
    for concept in spec.concepts:
        neighbours = [n for n in concept.neighbours if n.lower() not in targets]
        if not neighbours:
            continue
        turn = 0
        for prompt in forget.get(concept.target, []):
            if not mentions(prompt, concept.target):
                continue
            for _ in range(per_prompt):
                swap = swapped(prompt, concept.target, neighbours[turn % len(neighbours)])
                turn += 1
                if not any(t in swap.lower() for t in targets):
                    out.append(swap)
    return list(dict.fromkeys(out))


def training_retain(spec: ErasureSpec, config: Any, forget: dict[str, list[str]],
                    tokens: Tokens | None = None) -> list[str]:
    """Every retain prompt the engine trains on: the capped retain set, then the neighbour swaps."""
    base = retain_prompts(spec, config.max_retain_prompts, tokens)
    extra = neighbour_prompts(spec, forget, getattr(config, "retain_neighbours", 0))
    return list(dict.fromkeys([*base, *extra]))


@dataclass
class SampleSet:
    """Cached latents with, per latent, the prompt it trains (and for forget samples the surrogate prompt)."""

    latents: torch.Tensor
    prompts: list[str]
    surrogates: list[str] = field(default_factory=list)
    concept_index: torch.Tensor | None = None


def _load_images(paths: list[Path], size: int) -> torch.Tensor:
    arrays = []
    for path in paths:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def check_images(spec: ErasureSpec) -> None:
    """Every example image exists and opens, before any compute."""
    for concept in spec.concepts:
        for path in concept.example_images:
            if not Path(path).is_file():
                raise ErasureInputError(f"example image {path} does not exist")
            try:
                with Image.open(path) as img:
                    img.verify()
            except Exception as exc:  # PIL raises many types for a broken file
                raise ErasureInputError(f"example image {path} is not a readable image: {exc}") from exc


@torch.no_grad()
def encode_images(pipeline: Any, paths: list[Path], device: torch.device) -> torch.Tensor:
    vae = pipeline.vae
    pixels = _load_images(paths, resolution(pipeline)).to(device=device, dtype=vae.dtype)
    latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
    return latents.float()


@torch.no_grad()
def generate_latents(
    pipeline: Any,
    prompts: list[str],
    *,
    seed: int,
    steps: int,
    guidance: float,
    per_prompt: int,
    batch: int = 16,
    tick: Callable[[int], None] | None = None,
    memo: dict[DrawKey, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The frozen model's own latents for the prompts, `per_prompt` seeds each, in prompt order.
    `memo`: latents an earlier round of the job drew from the same weights (`core.spare.base_outputs`); only
    the others are drawn (and added to it)."""
    device = pipeline.unet.device
    jobs = [(p, seed + 1000 * i + k) for i, p in enumerate(prompts) for k in range(per_prompt)]

    def draw(indices: list[int]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for start in range(0, len(indices), batch):
            chunk = [jobs[i] for i in indices[start : start + batch]]
            gens, init = seeded_noise(pipeline, [s for _, s in chunk])
            size = resolution(pipeline)
            result = pipeline(
                [p for p, _ in chunk], num_inference_steps=steps, guidance_scale=guidance,
                latents=init, generator=gens, output_type="latent", height=size, width=size,
            )
            latents = result.images.float()
            # Kept latents wait on the CPU for the job's later rounds; the others go straight to training.
            out.extend(latents.cpu() if memo is not None else latents)
            if tick:
                tick(len(chunk))
        return out

    return torch.stack(drawn(memo, [(p, s, steps, guidance) for p, s in jobs], draw)).to(device)
