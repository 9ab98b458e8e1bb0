"""The engine trains under the UNet's forward process, q(x_t | x_0), whatever sampler the model folder ships.

SDXL folders ship an Euler sampler, whose `add_noise` noises as x_0 + sigma * eps and, once a pipeline call has
set its schedule, gives every timestep that schedule's current sigma. Saliency, the timestep focus, the
distillation and the noise-space probe must all noise as the UNet was trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import EulerDiscreteScheduler

import core.spare.engine as engine
import core.spare.methods.spare as spare_method
from core.spare import ConceptSpec, ErasureSpec, SpareConfig, erase
from core.spare.conditioning import training_scheduler
from tests.tiny_pipelines import BUILDERS

torch.set_num_threads(1)

FAST = dict(sample_steps=3, max_forget_prompts=2, max_retain_prompts=2, saliency_batches=1, timestep_grid=4,
            grid_seeds=1, batch_size=2, steps=2)


def _q_sample(alphas_cumprod: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def _noises_as_trained(scheduler: Any, alphas_cumprod: torch.Tensor) -> bool:
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    t = torch.tensor([0, 437, 999])
    return torch.allclose(scheduler.add_noise(x0, eps, t), _q_sample(alphas_cumprod, x0, eps, t), atol=1e-5)


def test_a_sampler_after_a_pipeline_call_does_not_noise_as_trained_and_the_training_scheduler_does() -> None:
    euler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    alphas = euler.alphas_cumprod.clone()
    euler.set_timesteps(4)
    euler.set_begin_index(0)  # as a pipeline call leaves it
    assert not _noises_as_trained(euler, alphas)
    assert _noises_as_trained(training_scheduler(euler), alphas)


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_every_stage_noises_as_the_unet_was_trained_with_an_euler_sampler(
    arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = BUILDERS[arch]()
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    alphas = pipe.scheduler.alphas_cumprod.clone()
    seen: dict[str, Any] = {}

    def recording(name: str, fn: Any) -> Any:
        def wrapped(unet: Any, scheduler: Any, *args: Any, **kwargs: Any) -> Any:
            seen[name] = scheduler
            return fn(unet, scheduler, *args, **kwargs)
        return wrapped

    for module, name in [(spare_method, "compute_saliency"), (spare_method, "concept_sampler"),
                         (spare_method, "distill"), (engine, "probe_metrics")]:
        monkeypatch.setattr(module, name, recording(name, getattr(module, name)))
    spec = ErasureSpec(concepts=[ConceptSpec(target="circle")], retain=["a square"])
    erase(pipe, spec, SpareConfig(**FAST), out_dir=tmp_path / "out")

    assert set(seen) == {"compute_saliency", "concept_sampler", "distill", "probe_metrics"}
    for name, scheduler in seen.items():
        assert _noises_as_trained(scheduler, alphas), name
    # The folder's own sampler is left as it was (it still samples the before/after grid).
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
