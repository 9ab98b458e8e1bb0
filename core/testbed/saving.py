"""Writing a testbed folder (pipeline/, classifier/, manifest.json) and hashing what it holds."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from core.filehash import file_sha256
from core.testbed.canvas import vocabulary_document
from core.testbed.classifier import Classifier

MANIFEST = "manifest.json"


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(f.relative_to(root)): file_sha256(f) for f in sorted(root.rglob("*")) if f.is_file() and f.name != MANIFEST
    }


def save_testbed(
    pipe: Any, clf: Classifier, out: Path, fp16: bool, extra_manifest: dict[str, Any] | None = None
) -> None:
    """Write pipeline/ and classifier/ (and a manifest when given) into `out`, replacing what was there."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if fp16:
        # UNet and VAE halve on disk; stock diffusers loads them back as float32. The text encoder stays
        # float32: transformers keeps a saved dtype, and float16 text beside a float32 UNet fails on a CPU.
        pipe = copy.deepcopy(pipe).to(torch.float16)
        pipe.text_encoder.to(torch.float32)
    pipe.save_pretrained(tmp / "pipeline", safe_serialization=True)
    clf.save(tmp / "classifier")
    (tmp / "pipeline" / "lethe.json").write_text(json.dumps(vocabulary_document(), indent=2) + "\n")
    if fp16:
        # Halve the classifier file too; it is upcast on load.
        from safetensors.torch import load_file, save_file

        f = tmp / "classifier" / "model.safetensors"
        save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(f)).items()}, str(f))
    for f in tmp.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)  # safetensors writes 0600
    if extra_manifest is not None:
        manifest = {**extra_manifest, "files": file_hashes(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
