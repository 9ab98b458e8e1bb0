"""Testbed build recipes: a `Profile` decides everything a build does, and is recorded in its manifest.

The recipes themselves are data (PROFILES): `full` (the shipped testbed), `tiny` (CI), `subword` (a second
testbed by another recipe, for reporting defaults on a model they were never tuned on) and `dev` (a third
recipe, for developing what the first testbed cannot show — the escalation of erase-until-verified, where the
first testbed passes in one round — without tuning on the second).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from core.testbed.canvas import OBJECTS, STYLES
from core.testbed.model import ModelConfig


@dataclass(frozen=True)
class Profile:
    """Everything that decides a build. Stored in the manifest."""

    name: str
    seed: int = 0
    images_per_pair: int = 400
    heldout_per_pair: int = 40
    classifier_steps: int = 300
    classifier_batch: int = 128
    classifier_lr: float = 2e-3
    vae_steps: int = 1200
    vae_batch: int = 64
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    unet_steps: int = 2500
    unet_batch: int = 128
    unet_lr: float = 1e-3
    unet_warmup: int = 200
    uncond_prob: float = 0.12  # classifier-free guidance: share of steps trained on the empty prompt
    ema_decay: float = 0.999
    eval_seeds: int = 8
    eval_steps: int = 20
    guidance_scales: tuple[float, ...] = (3.0, 5.0, 7.0)
    # One thread: on a shared 2-core box a 2-thread job ran ~9x slower per step than a 1-thread one once other
    # processes competed (OpenMP barriers wait on a descheduled thread). Measured 2026-11-29.
    threads: int = 1
    save_fp16: bool = True
    # Canvas concepts (objects or styles) whose images the UNet never sees: a retrained-from-scratch reference,
    # the gold standard an erasure of those concepts is judged against.
    exclude: tuple[str, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.exclude) - set(OBJECTS) - set(STYLES))
        if unknown:
            raise ValueError(f"exclude takes canvas concepts ({', '.join(OBJECTS + STYLES)}), not {', '.join(unknown)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "full": Profile(name="full", model=ModelConfig(vae_channels=(16, 32, 64), unet_channels=(48, 96, 96))),
    # CI: exercises every phase end to end in well under a minute; the result is not expected to draw well.
    "tiny": Profile(
        name="tiny",
        images_per_pair=8,
        heldout_per_pair=4,
        classifier_steps=30,
        classifier_batch=64,
        vae_steps=20,
        vae_batch=32,
        unet_steps=30,
        unet_batch=32,
        unet_warmup=5,
        eval_seeds=1,
        eval_steps=4,
        guidance_scales=(5.0,),
        save_fp16=False,
        model=ModelConfig(vae_channels=(16, 16, 16), unet_channels=(16, 32), text_width=32),
    ),
    # A second testbed by another recipe, for reporting defaults on a model they were never tuned on: another
    # seed, a smaller sub-word vocabulary (square, triangle, star, solid, striped and "style" split into pieces;
    # every training prompt still fits the 16-token context), narrower UNet and VAE, and far less training, so
    # that its prompt adherence is imperfect like a real model's.
    "subword": Profile(
        name="subword",
        seed=7,
        images_per_pair=150,
        heldout_per_pair=20,
        classifier_steps=200,
        vae_steps=500,
        unet_steps=975,
        unet_batch=64,
        unet_warmup=85,
        guidance_scales=(3.0, 5.0),
        model=ModelConfig(
            vae_channels=(16, 32, 32), unet_channels=(32, 64, 64), text_width=48, tokenizer_merges=130
        ),
    ),
    # A development testbed by a third recipe: its own seed, a smaller vocabulary (100 merges: seven canvas
    # words split into pieces) in a 32-token context (every training and held-out prompt fits), other UNet and VAE
    # widths, little training. Escalation levers and budgets may be tuned here; the second testbed only reports.
    "dev": Profile(
        name="dev",
        seed=11,
        images_per_pair=150,
        heldout_per_pair=20,
        classifier_steps=200,
        vae_steps=500,
        unet_steps=1000,
        unet_batch=64,
        unet_warmup=85,
        guidance_scales=(3.0, 5.0),
        model=ModelConfig(
            vae_channels=(16, 32, 48), unet_channels=(48, 64, 64), text_width=40, max_tokens=32,
            tokenizer_merges=100,
        ),
    ),
}


def profile_named(name: str, **overrides: Any) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    return replace(PROFILES[name], **overrides) if overrides else PROFILES[name]

