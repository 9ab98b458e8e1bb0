"""One LoRA that reproduces a chain of LoRA erasures on the first version of a model.

Low-rank deltas add exactly by stacking their factors:

    ΔW = Σ s_i B_i A_i = [s_1 B_1 … s_n B_n] · [A_1; …; A_n]

where s_i is adapter i's scale for the module (alpha / rank, or alpha / √rank with rsLoRA). The scale is folded
into B, so every module of the result has scale 1 (alpha = rank in its metadata) and rank Σ r_i. A module that
only some inputs adapt keeps the factors of those inputs. Loaded with stock diffusers `load_lora_weights` on v1,
the result gives v1 + ΔW_1 + … + ΔW_n: the fused weights of the version the chain ends at, because each erasure's
delta was trained on, and fused into, the version before it.

The inputs are diffusers-layout LoRA files (`adapter/pytorch_lora_weights.safetensors` as core.spare.outputs
writes them): `<component>.<module>.lora_A/lora_B.weight` keys, or the `lora.down/up` / `lora_linear_layer`
spellings diffusers converts some of them to, plus the peft config under the `lora_adapter_metadata` header key.
numpy only (core.lineage.tensorfile reads and writes the files): this runs in the API image, which has neither
torch nor the safetensors package.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.filehash import file_sha256
from core.lineage import tensorfile

# diffusers' header key for the peft config (diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY); its value is
# JSON whose keys are `<component>.<LoraConfig field>`.
LORA_METADATA_KEY = "lora_adapter_metadata"
COMBINED_FROM_KEY = "lethe.combined_from"
# (down, up) key suffixes: peft's own, then diffusers' converted spellings of the same two matrices.
_FACTOR_SUFFIXES = (
    (".lora_A.weight", ".lora_B.weight"),
    (".lora.down.weight", ".lora.up.weight"),
    (".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"),
)
_DOWN, _UP = ".lora_A.weight", ".lora_B.weight"


class AdapterCombineError(ValueError):
    """The inputs cannot be combined exactly (unknown keys, DoRA, metadata that contradicts the tensors,
    factors of different shapes for one module)."""


@dataclass(frozen=True)
class CombinedAdapter:
    """The written file and what it holds; `ranks` maps `<component>.<module>` to the combined rank."""

    path: Path
    size: int
    sha256: str
    ranks: dict[str, int]
    inputs: int
    input_sha256: list[str] = field(default_factory=list)

    @property
    def total_rank(self) -> int:
        return sum(self.ranks.values())

    @property
    def modules(self) -> int:
        return len(self.ranks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "size": self.size, "sha256": self.sha256, "ranks": self.ranks,
            "total_rank": self.total_rank, "modules": self.modules, "inputs": self.inputs,
            "input_sha256": self.input_sha256,
        }


@dataclass(frozen=True)
class _Factors:
    down: np.ndarray  # A: (rank, in[, kh, kw])
    up: np.ndarray  # B: (out, rank[, 1, 1])
    scale: float


@dataclass
class _Adapter:
    factors: dict[str, dict[str, _Factors]]  # component -> module -> factors
    configs: dict[str, dict[str, Any]]  # component -> peft LoraConfig fields
    sha256: str


def _split_key(key: str) -> tuple[str, str, str]:
    """`unet.a.b.lora_A.weight` -> ("unet", "a.b", "down")."""
    for down, up in _FACTOR_SUFFIXES:
        for suffix, which in ((down, "down"), (up, "up")):
            if key.endswith(suffix):
                component, _, module = key[: -len(suffix)].partition(".")
                if not module:
                    raise AdapterCombineError(f"LoRA key {key!r} has no component prefix (e.g. 'unet.')")
                return component, module, which
    raise AdapterCombineError(
        f"key {key!r} is not a LoRA factor (lora_A/lora_B weight); biases, DoRA magnitudes and alpha tensors "
        "cannot be combined exactly"
    )


def _configs(header: Mapping[str, str] | None) -> dict[str, dict[str, Any]]:
    raw = (header or {}).get(LORA_METADATA_KEY)
    if not raw:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, value in json.loads(raw).items():
        component, _, name = key.partition(".")
        out.setdefault(component, {})[name] = value
    return out


def _pattern_value(pattern: Mapping[str, Any] | None, module: str, default: Any) -> Any:
    """peft's lookup (peft.utils.other.get_pattern_key): the first key that matches the end of the module name."""
    for key in pattern or {}:
        if re.match(rf"(.*\.)?({key})$", module):
            return pattern[key]  # type: ignore[index]
    return default


def _scale(config: Mapping[str, Any] | None, module: str, rank: int, where: str) -> float:
    """The factor peft multiplies B·A by for this module."""
    if not config:
        return 1.0  # without metadata diffusers loads with alpha = rank
    if config.get("use_dora"):
        raise AdapterCombineError(f"{where}: DoRA adapters do not add linearly and cannot be combined")
    r = int(_pattern_value(config.get("rank_pattern"), module, config.get("r", rank)))
    if r != rank:
        raise AdapterCombineError(f"{where}: metadata says rank {r} for {module}, the factors have rank {rank}")
    alpha = float(_pattern_value(config.get("alpha_pattern"), module, config.get("lora_alpha", r)))
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def _read(path: Path) -> _Adapter:
    try:
        tensors, header = tensorfile.read(path)
    except tensorfile.TensorFileError as exc:
        raise AdapterCombineError(str(exc)) from exc
    configs = _configs(header)
    pairs: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for key, tensor in tensors.items():
        component, module, which = _split_key(key)
        slot = pairs.setdefault(component, {}).setdefault(module, {})
        if which in slot:
            raise AdapterCombineError(f"{path}: two {which} factors for {component}.{module}")
        slot[which] = tensor
    factors: dict[str, dict[str, _Factors]] = {}
    for component, modules in pairs.items():
        for module, slot in modules.items():
            missing = {"down", "up"} - set(slot)
            if missing:
                raise AdapterCombineError(f"{path}: {component}.{module} lacks its {missing.pop()} factor")
            down, up = slot["down"], slot["up"]
            rank = down.shape[0]
            if up.ndim < 2 or up.shape[1] != rank:
                raise AdapterCombineError(f"{path}: {component}.{module}: factor shapes {down.shape} and {up.shape}")
            scale = _scale(configs.get(component), module, rank, str(path))
            factors.setdefault(component, {})[module] = _Factors(down, up, scale)
    return _Adapter(factors, configs, file_sha256(path))


def _stack(parts: list[_Factors], name: str) -> tuple[np.ndarray, np.ndarray]:
    first = parts[0]
    for p in parts[1:]:
        if p.down.shape[1:] != first.down.shape[1:] or p.up.shape[:1] + p.up.shape[2:] != (
            first.up.shape[:1] + first.up.shape[2:]
        ):
            raise AdapterCombineError(f"{name}: the inputs adapt modules of different shapes (different base models?)")
    dtype = np.result_type(np.float32, *(p.up.dtype for p in parts), *(p.down.dtype for p in parts))
    down = np.concatenate([p.down.astype(dtype, copy=False) for p in parts], axis=0)
    up = np.concatenate([p.up.astype(dtype, copy=False) * dtype.type(p.scale) for p in parts], axis=1)
    return np.ascontiguousarray(down), np.ascontiguousarray(up)


def _combined_config(template: Mapping[str, Any] | None, ranks: dict[str, int]) -> dict[str, Any]:
    """The peft config of the result: every module at scale 1 (alpha = its rank), rank and alpha per module."""
    default_rank = max(set(ranks.values()), key=list(ranks.values()).count)
    config = dict(template or {"peft_type": "LORA", "bias": "none", "lora_dropout": 0.0, "init_lora_weights": True})
    config.update(
        r=default_rank,
        lora_alpha=float(default_rank),
        target_modules=sorted(ranks),
        # Full module names, escaped: peft reads pattern keys as regular expressions.
        rank_pattern={re.escape(m): r for m, r in ranks.items() if r != default_rank},
        alpha_pattern={re.escape(m): float(r) for m, r in ranks.items() if r != default_rank},
        use_rslora=False,
        use_dora=False,
    )
    return config


def combine_adapters(adapter_files: Sequence[Path], out_file: Path) -> CombinedAdapter:
    """Write one diffusers-layout LoRA equal to the sum of the inputs' weight deltas; return what was written.

    The order of the inputs is the order of the chain (it fixes the order of the stacked factors, not the sum).
    """
    if not adapter_files:
        raise AdapterCombineError("no adapter to combine")
    adapters = [_read(Path(p)) for p in adapter_files]
    tensors: dict[str, np.ndarray] = {}
    ranks: dict[str, int] = {}
    flat_metadata: dict[str, Any] = {}
    components = sorted({c for a in adapters for c in a.factors})
    for component in components:
        modules = sorted({m for a in adapters for m in a.factors.get(component, {})})
        component_ranks: dict[str, int] = {}
        for module in modules:
            parts = [a.factors[component][module] for a in adapters if module in a.factors.get(component, {})]
            down, up = _stack(parts, f"{component}.{module}")
            tensors[f"{component}.{module}{_DOWN}"] = down
            tensors[f"{component}.{module}{_UP}"] = up
            component_ranks[module] = down.shape[0]
            ranks[f"{component}.{module}"] = down.shape[0]
        template = next((a.configs[component] for a in adapters if component in a.configs), None)
        for name, value in _combined_config(template, component_ranks).items():
            flat_metadata[f"{component}.{name}"] = value
    header = {
        "format": "pt",
        LORA_METADATA_KEY: json.dumps(flat_metadata, indent=2, sort_keys=True),
        COMBINED_FROM_KEY: json.dumps([a.sha256 for a in adapters]),
    }
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(out_file.name + ".partial")
    tensorfile.write(partial, tensors, header)
    partial.chmod(0o644)  # artifacts are shared, whatever the umask
    os.replace(partial, out_file)
    return CombinedAdapter(
        path=out_file, size=out_file.stat().st_size, sha256=file_sha256(out_file), ranks=ranks,
        inputs=len(adapters), input_sha256=[a.sha256 for a in adapters],
    )


def adapter_is_exact(run: Path | Mapping[str, Any] | Any) -> bool:
    """Whether a run's adapter/ reproduces its fused/ weights, so that it may enter a cumulative adapter.

    `run` is the run folder, its report.json, the report as parsed JSON, or the engine's typed report
    (core.spare.report.ErasureReport). False when the run has no adapter (a method that trains the weights
    directly, such as ESD) or when a per-weight mask restricted the update: the mask is merged into fused/ only
    and the adapter holds the unmasked factors.
    """
    if hasattr(run, "model_dump"):
        report: Mapping[str, Any] = run.model_dump(mode="json")
    elif isinstance(run, Mapping):
        report = run
    else:
        path = Path(run)
        report = json.loads((path / "report.json" if path.is_dir() else path).read_text())
    adapter = report.get("adapter")
    if not isinstance(adapter, Mapping):
        return False
    return not adapter.get("weight_mask", False)
