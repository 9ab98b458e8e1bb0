"""core.lineage.tensorfile against the safetensors library: each reads what the other writes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch

from core.lineage import tensorfile


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "unet.a.lora_A.weight": rng.standard_normal((3, 7)).astype(np.float32),
        "unet.a.lora_B.weight": rng.standard_normal((5, 3, 1, 1)).astype(np.float16),
        "steps": np.arange(4, dtype=np.int64),
        "flags": np.array([True, False, True]),
        "doubles": np.array([2.5, -1.0], dtype=np.float64),
        "empty": np.zeros((0, 3), np.float32),
    }


def test_the_library_reads_what_we_write(tmp_path: Path) -> None:
    arrays = _arrays()
    tensorfile.write(tmp_path / "ours.safetensors", arrays, {"lora_adapter_metadata": '{"unet.r": 3}'})
    loaded = load_file(str(tmp_path / "ours.safetensors"))
    assert loaded.keys() == arrays.keys()
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array)
    with safe_open(str(tmp_path / "ours.safetensors"), framework="numpy") as fh:
        assert fh.metadata() == {"lora_adapter_metadata": '{"unet.r": 3}'}


def test_we_read_what_the_library_writes(tmp_path: Path) -> None:
    arrays = _arrays()
    save_file(arrays, str(tmp_path / "np.safetensors"), metadata={"format": "pt"})
    tensors, metadata = tensorfile.read(tmp_path / "np.safetensors")
    assert metadata == {"format": "pt"} and tensors.keys() == arrays.keys()
    for name, array in arrays.items():
        assert tensors[name].dtype == array.dtype and np.array_equal(tensors[name], array)
    # bfloat16 (numpy has none) is widened exactly to float32.
    bf16 = torch.randn(4, 6).to(torch.bfloat16)
    save_torch({"w": bf16}, str(tmp_path / "bf16.safetensors"))
    tensors, metadata = tensorfile.read(tmp_path / "bf16.safetensors")
    assert metadata == {} and np.array_equal(tensors["w"], bf16.float().numpy())


@pytest.mark.parametrize("blob", [
    b"\x01\x02",
    struct.pack("<Q", 10**9) + b"{}",
    struct.pack("<Q", 4) + b"nope",
    struct.pack("<Q", 2) + b"[]",
    (lambda h: struct.pack("<Q", len(h)) + h)(b'{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}' + b"\0" * 8),
    (lambda h: struct.pack("<Q", len(h)) + h)(b'{"x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}' + b"\0\0"),
    (lambda h: struct.pack("<Q", len(h)) + h)(b'{"x":{"dtype":"F32"}}'),
])
def test_malformed_files_are_refused(tmp_path: Path, blob: bytes) -> None:
    (tmp_path / "bad.safetensors").write_bytes(blob)
    with pytest.raises(tensorfile.TensorFileError):
        tensorfile.read(tmp_path / "bad.safetensors")
