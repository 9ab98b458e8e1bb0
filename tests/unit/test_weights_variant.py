"""Which weights variant a pipeline folder must be loaded with: read from its file names alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.pipeline_folder import UnsupportedModelError, weights_variant


def _folder(root: Path, files: dict[str, list[str]]) -> Path:
    (root / "model_index.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text("{}")
    for component, names in files.items():
        (root / component).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / component / name).write_bytes(b"")
    return root


def test_plain_weights_need_no_variant_even_beside_variant_files(tmp_path: Path) -> None:
    plain = _folder(tmp_path / "plain", {"unet": ["diffusion_pytorch_model.safetensors"],
                                         "text_encoder": ["model.safetensors", "model.fp16.safetensors"]})
    assert weights_variant(plain) is None


def test_weights_stored_only_as_a_variant_load_as_that_variant(tmp_path: Path) -> None:
    fp16 = _folder(tmp_path / "fp16", {
        "unet": ["diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
                 "diffusion_pytorch_model.fp16-00002-of-00002.safetensors"],
        "vae": ["diffusion_pytorch_model.fp16.safetensors"],
        "text_encoder": ["model.safetensors"],
    })
    assert weights_variant(fp16) == "fp16"
    _folder(tmp_path / "testbed" / "pipeline", {"unet": ["diffusion_pytorch_model.fp16.safetensors"]})
    assert weights_variant(tmp_path / "testbed") == "fp16"


def test_only_several_variants_is_ambiguous(tmp_path: Path) -> None:
    mixed = _folder(tmp_path / "mixed", {"unet": ["diffusion_pytorch_model.fp16.safetensors"],
                                         "vae": ["diffusion_pytorch_model.bf16.safetensors"]})
    with pytest.raises(UnsupportedModelError, match="several variants"):
        weights_variant(mixed)
