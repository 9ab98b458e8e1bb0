"""Recognizing a model folder without loading it: is it a Stable Diffusion diffusers pipeline (1.x, 2.x, XL),
are its weights safetensors, and its fingerprint. Pure file inspection — no torch — so model validation runs
on default-lane workers in the API image (core.spare.loading, which loads pipelines, re-uses the same rules).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from core.filehash import update_with_file
from core.spare.errors import UnsupportedModelError

__all__ = ["UnsupportedModelError", "check_safetensors", "detect_architecture", "fingerprint", "pipeline_dir",
           "weight_files", "weights_variant"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
_SD_PIPELINES = {"StableDiffusionPipeline", "StableDiffusionXLPipeline"}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnsupportedModelError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UnsupportedModelError(f"{path} does not hold a JSON object")
    return data


def pipeline_dir(model_dir: Path) -> Path:
    """The diffusers folder itself, or its pipeline/ subfolder (the testbed's layout)."""
    model_dir = Path(model_dir)
    if not (model_dir / "model_index.json").is_file() and (model_dir / "pipeline" / "model_index.json").is_file():
        return model_dir / "pipeline"
    return model_dir


def detect_architecture(model_dir: Path) -> str:
    """Return "sd1", "sd2" or "sdxl" for a diffusers pipeline folder; raise UnsupportedModelError otherwise."""
    if not Path(model_dir).is_dir():
        raise UnsupportedModelError(f"{model_dir} is not a folder")
    model_dir = pipeline_dir(model_dir)
    index_path = model_dir / "model_index.json"
    if not index_path.is_file():
        raise UnsupportedModelError(f"{model_dir} is not a diffusers pipeline: model_index.json is missing")
    index = _read_json(index_path)
    cls = index.get("_class_name")
    unet_entry = index.get("unet")
    if not isinstance(unet_entry, list) or len(unet_entry) != 2 or unet_entry[1] != "UNet2DConditionModel":
        raise UnsupportedModelError(
            f"{model_dir} has no UNet2DConditionModel (pipeline {cls!r}); Lethe erases Stable Diffusion 1.x, 2.x and XL"
        )
    if cls not in _SD_PIPELINES:
        raise UnsupportedModelError(
            f"pipeline class {cls!r} is not supported; expected one of {sorted(_SD_PIPELINES)}"
        )
    unet_cfg_path = model_dir / "unet" / "config.json"
    if not unet_cfg_path.is_file():
        raise UnsupportedModelError(f"{model_dir} lacks unet/config.json")
    unet_cfg = _read_json(unet_cfg_path)
    if cls == "StableDiffusionXLPipeline":
        if "text_encoder_2" not in index or unet_cfg.get("addition_embed_type") != "text_time":
            raise UnsupportedModelError(f"{model_dir} claims SDXL but lacks text_encoder_2 or text_time conditioning")
        return "sdxl"
    if unet_cfg.get("addition_embed_type") is not None:
        raise UnsupportedModelError(f"{model_dir}: a StableDiffusionPipeline UNet with added conditioning is unknown")
    sched_cfg_path = model_dir / "scheduler" / "scheduler_config.json"
    prediction = _read_json(sched_cfg_path).get("prediction_type", "epsilon") if sched_cfg_path.is_file() else "epsilon"
    # SD 2.x: v-prediction and/or linear projections in the transformer blocks; SD 1.x uses neither.
    if prediction == "v_prediction" or unet_cfg.get("use_linear_projection"):
        return "sd2"
    return "sd1"


_WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def check_safetensors(model_dir: Path) -> None:
    """Refuse a pipeline whose model components are stored only as pickle checkpoints (.bin/.ckpt/.pt):
    unpickling runs code, so Lethe loads safetensors only (load_pipeline passes use_safetensors=True)."""
    model_dir = pipeline_dir(model_dir)
    for component in _WEIGHT_COMPONENTS:
        folder = model_dir / component
        if not folder.is_dir():
            continue
        names = [p.name for p in folder.iterdir() if p.is_file()]
        if not any(n.endswith(".safetensors") for n in names) and any(n.endswith(_WEIGHT_SUFFIXES) for n in names):
            raise UnsupportedModelError(
                f"{component}/ holds pickle weights only; Lethe loads .safetensors only (convert the checkpoint)"
            )


def _variant_of(name: str) -> str | None:
    """`fp16` for `diffusion_pytorch_model.fp16.safetensors` or `model.fp16-00001-of-00002.safetensors`; None
    for a plain name."""
    stem = name.removesuffix(".safetensors")
    parts = stem.split(".")
    return parts[1].split("-")[0] if len(parts) == 2 and parts[1] else None


def weights_variant(model_dir: Path) -> str | None:
    """The weights variant to load (diffusers' `variant`, e.g. "fp16") where a component holds its safetensors
    only as that variant (a folder downloaded with `variant="fp16"`), else None. Several variants and no plain
    weights in one component: it is ambiguous which to load."""
    model_dir = pipeline_dir(model_dir)
    wanted: set[str] = set()
    for component in _WEIGHT_COMPONENTS:
        folder = model_dir / component
        if not folder.is_dir():
            continue
        names = [p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(".safetensors")]
        variants = {_variant_of(n) for n in names}
        if not names or None in variants:
            continue
        wanted |= {v for v in variants if v is not None}
    if len(wanted) > 1:
        raise UnsupportedModelError(f"{model_dir} holds weights only as several variants ({', '.join(sorted(wanted))})")
    return next(iter(wanted), None)


def weight_files(model_dir: Path) -> list[Path]:
    """Weight files below `model_dir`, in a stable (sorted relative path) order."""
    model_dir = Path(model_dir)
    files = [p for p in model_dir.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    return sorted(files, key=lambda p: p.relative_to(model_dir).as_posix())


def fingerprint(model_dir: Path) -> str:
    """sha256 over (relative path, content) of every weight file, in sorted order."""
    model_dir = Path(model_dir)
    files = weight_files(model_dir)
    if not files:
        raise UnsupportedModelError(f"{model_dir} holds no weight files")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
        update_with_file(digest, path)
    return digest.hexdigest()
