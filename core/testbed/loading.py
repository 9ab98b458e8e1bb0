"""Loading a testbed's pipeline and classifier, and recognising a testbed model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionPipeline

from core.testbed.classifier import Classifier
from core.testbed.paths import testbed_dir

MANIFEST = "manifest.json"


def _pipeline_dir(path: Path) -> Path:
    """Accept a testbed dir (with pipeline/) or a pipeline dir (with model_index.json)."""
    if (path / "model_index.json").is_file():
        return path
    if (path / "pipeline" / "model_index.json").is_file():
        return path / "pipeline"
    raise FileNotFoundError(f"no diffusers pipeline at {path} (model_index.json missing)")


def load_pipeline(path: Path | None = None, device: str = "cpu") -> StableDiffusionPipeline:
    """The testbed's StableDiffusionPipeline in float32 (shipped weights may be fp16 on disk)."""
    directory = _pipeline_dir(Path(path) if path is not None else testbed_dir())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipe = StableDiffusionPipeline.from_pretrained(
        str(directory), dtype=torch.float32, safety_checker=None, requires_safety_checker=False,
        use_safetensors=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_classifier(path: Path | None = None) -> Classifier:
    """The testbed's judge. `path` may be the testbed dir or its classifier/ dir."""
    directory = Path(path) if path is not None else testbed_dir()
    if (directory / "classifier" / "config.json").is_file():
        directory = directory / "classifier"
    return Classifier.load(directory)


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    directory = Path(path) if path is not None else testbed_dir()
    f = directory / MANIFEST
    if not f.is_file():
        raise FileNotFoundError(f"no testbed manifest at {f}")
    return json.loads(f.read_text())


def is_testbed(model_dir: Path) -> bool:
    """True if `model_dir` is a testbed pipeline: a testbed manifest sits in it or in its parent."""
    model_dir = Path(model_dir)
    for d in (model_dir, model_dir.parent):
        f = d / MANIFEST
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                return False
            return isinstance(data, dict) and "objects" in data and "styles" in data
    return False
