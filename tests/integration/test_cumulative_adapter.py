"""The cumulative adapter of an erasure chain: two real SPARE erasures in sequence on a tiny pipeline (the second on
the fused output of the first), combined by stacking factors, loaded with stock diffusers on v1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors import safe_open

from core.lineage import AdapterCombineError, adapter_is_exact, combine_adapters
from core.lineage.cumulative import LORA_METADATA_KEY
from core.spare import ConceptSpec, ErasureSpec, SpareConfig, erase
from core.spare.report import ErasureReport
from tests.tiny_pipelines import tiny_sd1

torch.set_num_threads(1)

FAST = dict(sample_steps=3, max_forget_prompts=4, max_retain_prompts=4, saliency_batches=2, timestep_grid=4,
            grid_seeds=1, batch_size=2, steps=12, lr=2e-2)
ADAPTER = Path("adapter/pytorch_lora_weights.safetensors")
PROMPTS = ["a photo of a circle", "a striped star", "a dog"]


def _spec(target: str) -> ErasureSpec:
    return ErasureSpec(concepts=[ConceptSpec(target=target)], retain=["a square", "a cat"])


def _load(folder: Path) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe: Any) -> np.ndarray:
    return pipe(PROMPTS, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np").images


def _ranks(path: Path) -> dict[str, int]:
    with safe_open(str(path), framework="numpy") as fh:
        return {k.removesuffix(".lora_A.weight").removesuffix(".lora.down.weight"): fh.get_slice(k).get_shape()[0]
                for k in fh.keys() if k.endswith((".lora_A.weight", ".lora.down.weight"))}  # noqa: SIM118


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1 (tiny SD1), v2 = v1 with `circle` erased, v3 = v2 with `star` erased; each erasure's run folder.

    The two erasures use different ranks, alphas and per-module ranks, so the scales folded into the combined
    factors differ per adapter and per module."""
    root = tmp_path_factory.mktemp("chain")
    tiny_sd1().save_pretrained(root / "v1")
    first = erase(_load(root / "v1"), _spec("circle"), SpareConfig(rank=2, alpha=3.0, **FAST), out_dir=root / "e1")
    second = erase(_load(first.out_dir / "fused"), _spec("star"),
                   SpareConfig(rank=4, alpha=1.5, rank_follows_saliency=True, seed=1, **FAST), out_dir=root / "e2")
    return {"v1": root / "v1", "e1": first.out_dir, "e2": second.out_dir, "v3": second.out_dir / "fused",
            "root": root}


def test_combined_adapter_on_v1_reproduces_v3(chain: dict[str, Path]) -> None:
    """Stock load_lora_weights of the combined adapter on v1 gives v3's weights and v3's images."""
    out = chain["root"] / "combined" / "pytorch_lora_weights.safetensors"
    combined = combine_adapters([chain["e1"] / ADAPTER, chain["e2"] / ADAPTER], out)
    assert combined.inputs == 2 and combined.path == out and combined.size == out.stat().st_size

    v1, v3 = _load(chain["v1"]), _load(chain["v3"])
    v1.load_lora_weights(out.parent, weight_name=out.name)
    v1.fuse_lora()
    v1.unload_lora_weights()
    fused_v1, fused_v3 = v1.unet.state_dict(), v3.unet.state_dict()
    assert fused_v1.keys() == fused_v3.keys()
    changed = [k for k in fused_v3 if not torch.equal(fused_v3[k], _load(chain["v1"]).unet.state_dict()[k])]
    assert changed, "the erasures changed no weight: the test would prove nothing"
    worst = max(float((fused_v1[k] - fused_v3[k]).abs().max()) for k in fused_v3)
    assert worst < 1e-5

    v1 = _load(chain["v1"])
    v1.load_lora_weights(out.parent, weight_name=out.name)
    with_adapter, reference = _images(v1), _images(v3)
    assert float(np.abs(with_adapter - reference).max()) < 2e-2
    # Without the adapter v1 draws something else, so the comparison above can fail.
    assert float(np.abs(_images(_load(chain["v1"])) - reference).max()) > 2e-2


def test_one_adapter_alone_does_not_reproduce_v3(chain: dict[str, Path]) -> None:
    """Only the second erasure's adapter on v1 misses the first erasure's delta: v3's weights are not reached."""
    v1, v3 = _load(chain["v1"]), _load(chain["v3"])
    v1.load_lora_weights(chain["e2"] / "adapter", weight_name=ADAPTER.name)
    v1.fuse_lora()
    v1.unload_lora_weights()
    a, b = v1.unet.state_dict(), v3.unet.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in b) > 1e-4


def test_combined_rank_is_the_sum(chain: dict[str, Path]) -> None:
    """Per module the rank is the sum of the inputs' ranks (modules in one input only keep theirs); the header
    gives every module scale 1 and records the inputs' sha256."""
    first, second = _ranks(chain["e1"] / ADAPTER), _ranks(chain["e2"] / ADAPTER)
    out = chain["root"] / "sum" / "combined.safetensors"
    combined = combine_adapters([chain["e1"] / ADAPTER, chain["e2"] / ADAPTER], out)
    expected = {m: first.get(m, 0) + second.get(m, 0) for m in first.keys() | second.keys()}
    assert combined.ranks == expected == _ranks(out)
    assert combined.total_rank == sum(first.values()) + sum(second.values())
    with safe_open(str(out), framework="numpy") as fh:
        header = fh.metadata()
    config = json.loads(header[LORA_METADATA_KEY])
    assert sorted(config["unet.target_modules"]) == sorted(m.removeprefix("unet.") for m in expected)
    for module, rank in expected.items():
        name = module.removeprefix("unet.")
        pattern_rank = next((r for k, r in config["unet.rank_pattern"].items() if k.replace("\\", "") == name),
                            config["unet.r"])
        pattern_alpha = next((a for k, a in config["unet.alpha_pattern"].items() if k.replace("\\", "") == name),
                             config["unet.lora_alpha"])
        assert pattern_rank == rank and pattern_alpha == rank
    assert json.loads(header["lethe.combined_from"]) == combined.input_sha256


def test_exactness_comes_from_the_report(chain: dict[str, Path], tmp_path: Path) -> None:
    """A plain run's adapter is exact; a masked run's and a run without adapter (ESD) are not."""
    assert adapter_is_exact(chain["e1"]) and adapter_is_exact(chain["e1"] / "report.json")
    report = json.loads((chain["e1"] / "report.json").read_text())
    assert adapter_is_exact(report) and adapter_is_exact(ErasureReport.model_validate(report))
    assert not adapter_is_exact({**report, "adapter": {**report["adapter"], "weight_mask": True}})
    assert not adapter_is_exact({**report, "adapter": None})


def test_masked_erasure_reports_inexact(tmp_path: Path) -> None:
    """A real run with a per-weight mask records it, and its adapter is reported as not reproducing fused/."""
    result = erase(tiny_sd1(), _spec("circle"), SpareConfig(weight_mask_top_q=0.3, **FAST), out_dir=tmp_path / "e")
    assert result.report.adapter is not None and result.report.adapter.weight_mask is True
    assert not adapter_is_exact(tmp_path / "e") and not adapter_is_exact(result.report)


def _write(path: Path, a_shape: tuple[int, ...], b_shape: tuple[int, ...], *, extra: bool = False,
           header: dict[str, str] | None = None) -> Path:
    from safetensors.numpy import save_file

    tensors = {"unet.m.lora_A.weight": np.zeros(a_shape, np.float32),
               "unet.m.lora_B.weight": np.zeros(b_shape, np.float32)}
    if extra:
        tensors["unet.m.lora_magnitude_vector"] = np.ones(b_shape[0], np.float32)
    save_file(tensors, str(path), metadata=header)
    return path


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    """No inputs, DoRA tensors, metadata that contradicts the factors, factors of different shapes: refused,
    and nothing is written."""
    out = tmp_path / "out.safetensors"
    with pytest.raises(AdapterCombineError):
        combine_adapters([], out)
    with pytest.raises(AdapterCombineError, match="cannot be combined"):
        combine_adapters([_write(tmp_path / "dora.safetensors", (2, 4), (4, 2), extra=True)], out)
    lying = _write(tmp_path / "lying.safetensors", (2, 4), (4, 2),
                   header={LORA_METADATA_KEY: json.dumps({"unet.r": 3, "unet.lora_alpha": 3})})
    with pytest.raises(AdapterCombineError, match="rank 3"):
        combine_adapters([lying], out)
    plain = _write(tmp_path / "plain.safetensors", (2, 4), (4, 2))
    other_shape = _write(tmp_path / "other.safetensors", (2, 5), (4, 2))
    with pytest.raises(AdapterCombineError, match="different shapes"):
        combine_adapters([plain, other_shape], out)
    assert not out.exists()


def test_combining_needs_no_torch(chain: dict[str, Path], tmp_path: Path) -> None:
    """The API image (default-queue workers) has neither torch nor safetensors: combining in a fresh interpreter
    imports no part of the torch stack."""
    from tests.unit.test_deploy_files import TORCH_STACK

    code = (
        "import sys; from pathlib import Path; from core.lineage import combine_adapters; "
        f"r = combine_adapters([Path({str(chain['e1'] / ADAPTER)!r}), Path({str(chain['e2'] / ADAPTER)!r})], "
        f"Path({str(tmp_path / 'c.safetensors')!r})); "
        f"loaded = sorted(m for m in {sorted(TORCH_STACK)!r} if m in sys.modules); "
        "assert r.total_rank > 0 and not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
