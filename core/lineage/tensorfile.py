"""Reading and writing .safetensors files with numpy alone.

The API image (which also runs the default-queue workers) installs neither torch nor the safetensors package,
and cumulative adapters are built there. The format is small and fixed: an 8-byte little-endian header length,
a JSON header mapping each tensor name to {dtype, shape, data_offsets} (plus an optional `__metadata__` map of
strings), then the tensors' bytes, little-endian and C-ordered, back to back.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_MAX_HEADER = 100 * 2**20  # the safetensors library's own limit


class TensorFileError(ValueError):
    """Not a well-formed .safetensors file, or a tensor numpy cannot hold."""


def _bfloat16_to_float32(raw: bytes, shape: list[int]) -> np.ndarray:
    # bfloat16 is the top half of a float32: widening it is exact.
    return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)


def read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of a .safetensors file; bfloat16 tensors come back widened to float32."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise TensorFileError(f"{path}: too short for a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > _MAX_HEADER or 8 + size > len(data):
        raise TensorFileError(f"{path}: header length {size} does not fit the file")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TensorFileError(f"{path}: header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise TensorFileError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    body = data[8 + size :]
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise TensorFileError(f"{path}: tensor {name!r} has a malformed entry") from exc
        count = int(np.prod(shape, dtype=np.int64))
        itemsize = 2 if dtype == "BF16" else _DTYPES[dtype].itemsize if dtype in _DTYPES else None
        if itemsize is None:
            raise TensorFileError(f"{path}: tensor {name!r} has dtype {dtype}, which numpy cannot hold")
        if not 0 <= begin <= end <= len(body) or end - begin != count * itemsize:
            raise TensorFileError(f"{path}: tensor {name!r} has offsets {begin}..{end} that do not match its shape")
        raw = body[begin:end]
        if dtype == "BF16":
            tensors[name] = _bfloat16_to_float32(raw, shape)
        else:
            tensors[name] = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(shape).copy()
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def write(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Write `tensors` (in name order) and string `metadata` as a .safetensors file."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        little = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if np.dtype(little.str) not in _NAMES:
            raise TensorFileError(f"tensor {name!r} has dtype {array.dtype}, which this writer does not store")
        raw = array.astype(little.str, copy=False).tobytes()
        header[name] = {"dtype": _NAMES[np.dtype(little.str)], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the tensors start 8-byte aligned, as the safetensors library writes
    with Path(path).open("wb") as fh:
        fh.write(struct.pack("<Q", len(encoded)))
        fh.write(encoded)
        for raw in chunks:
            fh.write(raw)
