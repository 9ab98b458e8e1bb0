"""Finished build stages (classifier, VAE, UNet checkpoint) kept on disk and reused by a later build whose
settings for that stage are the same (`lethe testbed build --stages DIR`)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from core.testbed.classifier import Classifier
from core.testbed.phases import Ema
from core.testbed.profiles import Profile
from core.testbed.saving import MANIFEST


class StageCache:
    """Finished build stages kept on disk, keyed by the settings that decide them."""

    def __init__(self, root: Path | None, p: Profile) -> None:
        self.root = root
        self.keys = _stage_keys(p.to_dict())
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        self.index_path = root / "stages.json" if root is not None else None
        self.index: dict[str, Any] = (
            json.loads(self.index_path.read_text()) if self.index_path and self.index_path.is_file() else {}
        )

    def _valid(self, stage: str) -> bool:
        return self.root is not None and self.index.get(stage, {}).get("key") == self.keys[stage]

    def _record(self, stage: str, minutes: float, **extra: Any) -> None:
        if self.index_path is None:
            return
        self.index[stage] = {"key": self.keys[stage], "minutes": minutes, **extra}
        self.index_path.write_text(json.dumps(self.index, indent=2) + "\n")

    def minutes(self, stage: str) -> float:
        return float(self.index[stage]["minutes"])

    def load_classifier(self) -> Classifier | None:
        return Classifier.load(self.root / "classifier") if self._valid("classifier") and self.root else None

    def save_classifier(self, clf: Classifier, minutes: float) -> None:
        if self.root is not None:
            clf.save(self.root / "classifier")
            self._record("classifier", minutes)

    def load_vae(self) -> torch.nn.Module | None:
        if not self._valid("vae") or self.root is None:
            return None
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(str(self.root / "vae")).eval()

    def save_vae(self, vae: torch.nn.Module, minutes: float) -> None:
        if self.root is not None:
            vae.save_pretrained(str(self.root / "vae"))
            self._record("vae", minutes)

    def load_unet(
        self, unet: Any, text: Any, ema_u: Ema, ema_t: Ema, opt: Any, gen: torch.Generator
    ) -> tuple[int, float]:
        if not self._valid("unet") or self.root is None:
            return 0, 0.0
        state = torch.load(self.root / "unet_checkpoint.pt", weights_only=False)
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
        ema_u.shadow.load_state_dict(state["ema_unet"])
        ema_t.shadow.load_state_dict(state["ema_text"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        return int(state["step"]), float(self.index["unet"]["minutes"])

    def save_unet(
        self, step: int, unet: Any, text: Any, ema_u: Ema, ema_t: Ema, opt: Any, gen: torch.Generator, minutes: float
    ) -> None:
        if self.root is None:
            return
        state = {
            "step": step,
            "unet": unet.state_dict(),
            "text": text.state_dict(),
            "ema_unet": ema_u.shadow.state_dict(),
            "ema_text": ema_t.shadow.state_dict(),
            "opt": opt.state_dict(),
            "gen": gen.get_state(),
        }
        tmp = self.root / "unet_checkpoint.pt.tmp"
        torch.save(state, tmp)
        tmp.rename(self.root / "unet_checkpoint.pt")
        self._record("unet", minutes, step=step)


def _stage_keys(d: dict[str, Any]) -> dict[str, str]:
    """Each stage's key from a profile as a dict (a Profile's, or the one a testbed's manifest records)."""
    data = {k: d[k] for k in ("seed", "images_per_pair")}
    keys = {
        "classifier": _key(data, _pick(d, "classifier_"), d["model"]["resolution"]),
        "vae": _key(
            data, _pick(d, "vae_"), {k: d["model"][k] for k in ("resolution", "vae_channels", "latent_channels")}
        ),
    }
    # A default tokenizer is left out, so the keys of builds recorded before the field existed stay valid.
    model = {k: v for k, v in d["model"].items() if not (k == "tokenizer_merges" and v is None)}
    unet_parts = [keys["vae"], _pick(d, "unet_"), d["uncond_prob"], d["ema_decay"], model]
    if d.get("exclude"):  # appended only when set, so the keys of existing full builds stay valid
        unet_parts.append(sorted(d["exclude"]))
    keys["unet"] = _key(*unet_parts)
    return keys


def seed_stages(stages_dir: Path, testbed: Path, p: Profile) -> list[str]:
    """Put a finished testbed's classifier and VAE into the stage cache when its build settings for those
    stages are `p`'s, so a variant build (e.g. `exclude`) trains only the UNet and shares the rest exactly.
    Returns the stages seeded."""
    manifest = json.loads((testbed / MANIFEST).read_text())
    theirs = _stage_keys(manifest["profile"])
    stages = StageCache(stages_dir, p)
    seeded = []
    for stage, source in (("classifier", testbed / "classifier"), ("vae", testbed / "pipeline" / "vae")):
        if theirs[stage] != stages.keys[stage]:
            continue
        shutil.copytree(source, stages_dir / stage, dirs_exist_ok=True)
        stages._record(stage, float(manifest.get("training_minutes", {}).get(stage, 0.0)))
        seeded.append(stage)
    return seeded


def _pick(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k.startswith(prefix)}


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

