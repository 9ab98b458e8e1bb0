"""The mini-canvas: a procedurally drawn OBJECTS × STYLES image world (the shape of UnlearnCanvas).

Every image is drawn on the fly from (object, style, seed) and is deterministic. Jitter covers position, size,
rotation, the colours within the style's palette, the texture phase and the background. Each style is a
rendering family with its own texture AND palette, so style stays recognisable after a small VAE blurs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

OBJECTS: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
STYLES: tuple[str, ...] = ("solid", "striped", "dotted", "outline", "checkered")

RESOLUTION = 32
_SUPERSAMPLE = 4

# Prompts the pipeline is trained on. Template 0 is the UnlearnCanvas wording and the one the evaluator uses.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "a {object} image in {style} style",
    "a {object} in {style} style",
    "a {style} {object}",
    "{style} style {object}",
)

# Never used for training: paraphrases and synonyms for the robustness probe. They share the concept words
# (paraphrases) or replace them (synonyms), so a "filter" that only blocks the exact training prompt misses them.
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "a picture of a {object} drawn in {style} style",
    "{object} , {style}",
    "the {style} {object} shape",
    "an illustration of one {object} with {style} look",
    "{style} {object} on a plain background",
)
HELDOUT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("disc", "round"),
    "square": ("box", "block"),
    "triangle": ("pyramid", "wedge"),
    "star": ("pentagram", "sparkle"),
    "cross": ("plus", "x"),
    "heart": ("love", "valentine"),
    "solid": ("plain", "filled"),
    "striped": ("stripes", "lined"),
    "dotted": ("spotted", "polka"),
    "outline": ("contour", "stroked"),
    "checkered": ("checkerboard", "chess"),
}

# What the testbed declares about itself in pipeline/lethe.json (core.evaluation.vocabulary): its concepts,
# how a judge phrases a label (the evaluator's wording) and held-out wordings for verification. The held-out
# ones are the paraphrases the base model draws as well as its training wordings (object and style 0.92-1.00
# against 0.57-0.83 for the other paraphrases, measured with the testbed classifier, 2 seeds per pair).
VERIFY_HELDOUT_TEMPLATES: tuple[str, ...] = (HELDOUT_TEMPLATES[2], HELDOUT_TEMPLATES[4], HELDOUT_TEMPLATES[1])


def vocabulary_document() -> dict[str, object]:
    """The lethe.json a testbed pipeline ships (its classifier sits beside the pipeline folder): besides the
    judge's phrasing, the erasure's — the training wordings as forget contexts, the evaluator's wording of the
    other concepts as the default retain set, and the next concept of the kind as the default surrogate (the
    generic neutral words are words this model never saw)."""
    label = [TRAIN_TEMPLATES[0]]
    heldout = list(VERIFY_HELDOUT_TEMPLATES)
    return {
        "format": 1,
        "concepts": {"object": list(OBJECTS), "style": list(STYLES)},
        "label_templates": {"object": label, "style": label},
        "heldout_templates": {"object": heldout, "style": heldout},
        "prompt_templates": {"object": list(TRAIN_TEMPLATES), "style": list(TRAIN_TEMPLATES)},
        "retain_templates": {"object": label, "style": label},
        "surrogate_rule": "next-of-kind",
        "judge": {"classifier": "../classifier", "diagnostics": "canvas-grid"},
    }


# Each style: the palette its foreground colours come from (RGB 0..255).
_PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "solid": ((214, 40, 40), (230, 90, 30), (200, 30, 80)),
    "striped": ((30, 70, 200), (20, 120, 220), (60, 40, 170)),
    "dotted": ((20, 140, 60), (60, 160, 30), (10, 110, 90)),
    "outline": ((120, 40, 160), (150, 30, 130), (90, 30, 140)),
    "checkered": ((30, 30, 30), (70, 50, 20), (40, 40, 70)),
}
_SECONDARY: dict[str, tuple[int, int, int]] = {
    "striped": (235, 235, 120),
    "dotted": (175, 225, 150),
    "checkered": (240, 200, 40),
}
_BACKGROUNDS: tuple[tuple[int, int, int], ...] = (
    (236, 236, 236),
    (245, 240, 225),
    (225, 232, 240),
    (250, 250, 250),
    (230, 240, 230),
)


def prompt(object: str, style: str, template_index: int = 0) -> str:
    """The training prompt for (object, style); template_index picks one of TRAIN_TEMPLATES."""
    _check(object, style)
    return TRAIN_TEMPLATES[template_index % len(TRAIN_TEMPLATES)].format(object=object, style=style)


def heldout_prompts(object: str, style: str) -> list[str]:
    """Every held-out paraphrase of (object, style), with the original words."""
    _check(object, style)
    return [t.format(object=object, style=style) for t in HELDOUT_TEMPLATES]


def synonym_prompts(object: str, style: str, replace: str) -> list[str]:
    """Held-out prompts where the concept `replace` (object or style name) is swapped for each of its synonyms."""
    _check(object, style)
    out: list[str] = []
    for syn in HELDOUT_SYNONYMS[replace]:
        o = syn if replace == object else object
        s = syn if replace == style else style
        out.extend(t.format(object=o, style=s) for t in (TRAIN_TEMPLATES[0], *HELDOUT_TEMPLATES[:2]))
    return out


def vocabulary() -> list[str]:
    """Every word any template, concept or synonym can produce (the tokenizer is built from this)."""
    words: set[str] = set(OBJECTS) | set(STYLES)
    for syns in HELDOUT_SYNONYMS.values():
        words.update(syns)
    for t in (*TRAIN_TEMPLATES, *HELDOUT_TEMPLATES):
        words.update(w for w in t.replace("{object}", " ").replace("{style}", " ").split() if w.isalpha())
    return sorted(words)


def _check(object: str, style: str) -> None:
    if object not in OBJECTS:
        raise ValueError(f"unknown object {object!r}; choose from {', '.join(OBJECTS)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")


def _outline(object: str) -> np.ndarray:
    """Unit-size polygon (N×2, roughly within the unit disc) for an object, centred at 0."""
    if object == "circle":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1) * 0.92
    if object == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * 0.78
    if object == "triangle":
        t = np.array([-90, 30, 150]) * math.pi / 180
        return np.stack([np.cos(t), np.sin(t) + 0.2], 1) * 1.05
    if object == "star":
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.08, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t) + 0.08], 1)
    if object == "cross":
        a, b = 0.32, 0.95
        pts = [
            (-a, -b),
            (a, -b),
            (a, -a),
            (b, -a),
            (b, a),
            (a, a),
            (a, b),
            (-a, b),
            (-a, a),
            (-b, a),
            (-b, -a),
            (-a, -a),
        ]
        return np.array(pts, dtype=float)
    if object == "heart":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y + 2.5], 1) / 16.5
    raise ValueError(f"unknown object {object!r}")


def _texture(style: str, size: int, rng: np.random.Generator, fg: np.ndarray) -> np.ndarray:
    """H×W×3 float texture for the filled area of the shape."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    img = np.empty((size, size, 3))
    img[:] = fg
    unit = size / RESOLUTION  # one output pixel in supersampled pixels
    if style == "striped":
        angle = rng.uniform(-0.35, 0.35) + (math.pi / 4 if rng.random() < 0.5 else -math.pi / 4)
        period = rng.uniform(5.0, 6.0) * unit
        u = xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, period)
        img[(u % period) < period / 2] = _SECONDARY[style]
    elif style == "dotted":
        img[:] = _SECONDARY[style]
        period = rng.uniform(5.0, 6.0) * unit
        ox, oy = rng.uniform(0, period, 2)
        dx = ((xx + ox) % period) - period / 2
        dy = ((yy + oy) % period) - period / 2
        img[dx**2 + dy**2 < (period * 0.33) ** 2] = fg
    elif style == "checkered":
        cell = rng.uniform(4.0, 5.0) * unit
        ox, oy = rng.uniform(0, cell, 2)
        parity = (np.floor((xx + ox) / cell) + np.floor((yy + oy) / cell)) % 2
        img[parity == 1] = _SECONDARY[style]
    return img


def render(object: str, style: str, seed: int, size: int = RESOLUTION) -> Image.Image:
    """Draw one image of `object` in `style`; the same (object, style, seed, size) always gives the same pixels."""
    _check(object, style)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, OBJECTS.index(object), STYLES.index(style)])
    big = size * _SUPERSAMPLE

    bg = np.array(_BACKGROUNDS[rng.integers(len(_BACKGROUNDS))], dtype=float) + rng.uniform(-8, 8, 3)
    palette = _PALETTES[style]
    fg = np.array(palette[rng.integers(len(palette))], dtype=float) + rng.uniform(-15, 15, 3)

    radius = rng.uniform(0.30, 0.40) * big
    cx, cy = big / 2 + rng.uniform(-0.09, 0.09, 2) * big
    angle = rng.uniform(-0.30, 0.30)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = _outline(object) @ rot.T * radius + np.array([cx, cy])
    poly = [(float(x), float(y)) for x, y in pts]

    mask_img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask_img)
    if style == "outline":
        width = round(rng.uniform(2.2, 3.0) * _SUPERSAMPLE * size / RESOLUTION)
        draw.polygon(poly, outline=255, width=width)
    else:
        draw.polygon(poly, fill=255)
    mask = np.asarray(mask_img, dtype=float)[..., None] / 255.0

    canvas = np.empty((big, big, 3))
    canvas[:] = bg
    tex = _texture(style, big, rng, fg)
    out = canvas * (1 - mask) + tex * mask
    out = np.clip(out, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB").resize((size, size), Image.Resampling.BOX)


def render_batch(pairs: Sequence[tuple[str, str]], seeds: Sequence[int], size: int = RESOLUTION) -> np.ndarray:
    """N×H×W×3 uint8 array of renders for aligned (object, style) pairs and seeds."""
    return np.stack([np.asarray(render(o, s, seed, size)) for (o, s), seed in zip(pairs, seeds, strict=True)])
