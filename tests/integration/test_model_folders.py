"""Model folders load as they are: the shipped testbed and every fused folder Lethe writes open with stock
`StableDiffusionPipeline.from_pretrained(path)` (no dtype argument) and generate on a CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from safetensors import safe_open

from core.spare.outputs import save_fused
from core.testbed.loading import load_pipeline as load_testbed
from core.testbed.paths import SHIPPED
from tests.tiny_pipelines import tiny_sd1

torch.set_num_threads(1)


def _dtypes(pipe: StableDiffusionPipeline) -> set[torch.dtype]:
    return {c.dtype for c in pipe.components.values() if isinstance(c, torch.nn.Module)}


def _generate(pipe: StableDiffusionPipeline, prompt: str, size: int) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe([prompt, prompt], num_inference_steps=4, guidance_scale=5.0, height=size, width=size,
                generator=torch.Generator().manual_seed(3), output_type="np").images


def test_shipped_testbed_loads_with_stock_from_pretrained_and_generates_on_cpu() -> None:
    stock = StableDiffusionPipeline.from_pretrained(SHIPPED / "pipeline")
    assert _dtypes(stock) == {torch.float32}
    size = stock.unet.config.sample_size * stock.vae_scale_factor
    images = _generate(stock, "a circle in striped style", size)
    assert images.shape == (2, size, size, 3) and np.isfinite(images).all() and images.std() > 0.01
    # The text encoder was upcast from float16 on disk: exact, so Lethe's own loader sees the same model.
    assert np.array_equal(images, _generate(load_testbed(SHIPPED), "a circle in striped style", size))
    with safe_open(str(SHIPPED / "pipeline" / "text_encoder" / "model.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in list(fh.keys())} == {torch.float32}


def test_fused_folder_is_written_in_one_dtype_whatever_the_pipeline_holds(tmp_path: Path) -> None:
    """A pipeline held with a float16 text encoder (how a float16 checkpoint loads without a dtype) is saved
    in float32 throughout; the caller's components keep their dtype and weights."""
    pipe = tiny_sd1()
    reference = _generate(pipe, "a photo of a circle", 16)
    pipe.text_encoder.to(torch.float16)
    half = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    save_fused(pipe, tmp_path / "fused")
    assert pipe.text_encoder.dtype == torch.float16
    assert all(torch.equal(half[k], v) for k, v in pipe.text_encoder.state_dict().items())
    for weights in (tmp_path / "fused").rglob("*.safetensors"):
        assert weights.stat().st_mode & 0o777 == 0o644
        with safe_open(str(weights), "pt") as fh:
            assert {fh.get_tensor(k).dtype for k in list(fh.keys())} == {torch.float32}, weights
    stock = StableDiffusionPipeline.from_pretrained(tmp_path / "fused")
    assert _dtypes(stock) == {torch.float32}
    images = _generate(stock, "a photo of a circle", 16)
    # Only the text encoder's float16 rounding separates it from the float32 original.
    assert images.shape == reference.shape and np.abs(images - reference).max() < 0.05


def test_a_folder_holding_only_fp16_variant_weights_loads_in_float32(tmp_path: Path) -> None:
    """A folder downloaded with `variant="fp16"` (only `*.fp16.safetensors`) loads with Lethe's loader, upcast
    for the CPU, and draws what the same weights draw from a plain folder."""
    from core.spare.loading import load_pipeline

    pipe = tiny_sd1()
    pipe.to(torch.float16).save_pretrained(tmp_path / "fp16", variant="fp16")
    pipe.save_pretrained(tmp_path / "plain")  # the same (fp16-rounded) weights, plain names
    assert not list((tmp_path / "fp16").rglob("diffusion_pytorch_model.safetensors"))
    variant, plain = load_pipeline(tmp_path / "fp16"), load_pipeline(tmp_path / "plain")
    assert _dtypes(variant) == {torch.float32}
    assert np.array_equal(_generate(variant, "a photo of a circle", 16), _generate(plain, "a photo of a circle", 16))
