"""Every image Lethe draws depends on its own seed only, with any sampler a model folder ships.

Verification compares the base and the erased model image by image on the same seeds, and a job's rounds reuse
the base model's images: a stochastic sampler (Euler ancestral, DDPM) must draw its step noise from the image's
seed, not from the global random state.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler

from core.evaluation.sampling import generate
from core.spare.outputs import generate_images
from core.spare.samples import generate_latents
from tests.tiny_pipelines import tiny_sd1

torch.set_num_threads(1)


@pytest.fixture
def ancestral() -> object:
    pipe = tiny_sd1()
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_an_image_is_the_same_whatever_else_is_drawn_and_whatever_ran_before(ancestral: object) -> None:
    both = generate(ancestral, ["a cat", "a dog"], [1, 2], steps=4)
    torch.manual_seed(123)  # the global random state must not matter
    alone = generate(ancestral, ["a dog"], [2], steps=4)
    assert np.array_equal(both[1], alone[0])
    assert np.array_equal(both, generate(ancestral, ["a cat", "a dog"], [1, 2], steps=4))


def test_training_latents_and_grid_images_repeat_with_a_stochastic_sampler(ancestral: object) -> None:
    first = generate_latents(ancestral, ["a cat", "a dog"], seed=5, steps=3, guidance=5.0, per_prompt=1)
    torch.manual_seed(7)
    assert torch.equal(first, generate_latents(ancestral, ["a cat", "a dog"], seed=5, steps=3, guidance=5.0,
                                               per_prompt=1))
    grid = generate_images(ancestral, ["a cat"], [3, 4], steps=3, guidance=5.0)
    torch.manual_seed(8)
    again = generate_images(ancestral, ["a cat"], [3, 4], steps=3, guidance=5.0)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(grid[0], again[0], strict=True))


def test_a_deterministic_sampler_draws_what_it_drew_before() -> None:
    """DDIM (the testbeds' sampler) takes no step noise: passing the generators leaves its images as they were."""
    pipe = tiny_sd1()
    assert isinstance(pipe.scheduler, DDIMScheduler)
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    init = torch.stack([torch.randn(shape, generator=g) for g in gens])
    plain = pipe(["a cat", "a dog"], num_inference_steps=4, guidance_scale=5.0, latents=init, output_type="np")
    ours = generate(pipe, ["a cat", "a dog"], [1, 2], steps=4, guidance_scale=5.0)
    assert np.array_equal(ours, (np.clip(plain.images, 0, 1) * 255).round().astype(np.uint8))
