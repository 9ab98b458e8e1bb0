"""Everything a run writes, in one place: the adapter (diffusers and kohya layouts, with metadata), the fused
model folder, before/after images and grid, the model card (README.md), report.json and file hashes."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.evaluation.sampling import seeded_noise
from core.spare import adapters as lora
from core.spare.base_outputs import DrawKey, drawn
from core.spare.conditioning import resolution
from core.spare.report import EngineMetrics, ErasureReport

ADAPTER_DIR = "adapter"
DIFFUSERS_ADAPTER = "pytorch_lora_weights.safetensors"
KOHYA_ADAPTER = "lora_kohya.safetensors"
FUSED_DIR = "fused"
MODEL_CARD = "README.md"
# verifier(metrics) -> {check name: {"value", "min" | "max", "passed"}}: the caller's acceptance rule.
Verifier = Callable[[EngineMetrics], dict[str, dict[str, Any]]]

LIBRARIES = ("torch", "diffusers", "transformers", "peft", "safetensors", "numpy", "pillow", "lethe")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def list_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@torch.no_grad()
def generate_images(
    pipeline: Any, prompts: list[str], seeds: list[int], *, steps: int, guidance: float,
    memo: dict[DrawKey, Image.Image] | None = None,
) -> list[list[Image.Image]]:
    """images[prompt][seed] with fixed CPU generators, so before and after see the same noise (a stochastic
    sampler's step noise too). `memo`: images an earlier round drew from the same (base) weights
    (`core.spare.base_outputs`); only the others are drawn."""
    size = resolution(pipeline)

    def row(prompt: str) -> list[Image.Image]:
        def draw(indices: list[int]) -> list[Image.Image]:
            gens, init = seeded_noise(pipeline, [seeds[i] for i in indices])
            result = pipeline(
                [prompt] * len(indices), num_inference_steps=steps, guidance_scale=guidance,
                latents=init, generator=gens, height=size, width=size, output_type="pil",
            )
            return list(result.images)

        return drawn(memo, [(prompt, s, steps, guidance) for s in seeds], draw)

    return [row(prompt) for prompt in prompts]


def write_grid(
    prompts: list[str], kinds: list[str], seeds: list[int], before: list[list[Image.Image]],
    after: list[list[Image.Image]], out_path: Path,
) -> Path:
    """grid.png through the evaluation package's renderer (rows = prompts, base | erased × seeds)."""
    from core.evaluation.grid import render_grid

    def stack(images: list[list[Image.Image]]) -> np.ndarray:
        return np.stack([np.asarray(img.convert("RGB")) for row in images for img in row])

    render_grid(stack(before), stack(after), prompts, kinds, seeds).save(out_path)
    return out_path


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str))


def write_report(out_dir: Path, report: ErasureReport) -> Path:
    """report.json: the typed report's JSON dump, member for member."""
    path = out_dir / "report.json"
    write_json(path, report.dump())
    return path


@dataclass(frozen=True)
class Provenance:
    """Where a run comes from, for the adapter metadata and the model card (all optional: the CLI knows less)."""

    request_id: str | None = None
    base_fingerprint: str | None = None
    base_source: str | None = None
    # The weights variant the base folder holds its files as (e.g. "fp16"), or None for plain files: loading
    # the adapter's base needs the same `variant=` argument.
    base_variant: str | None = None


def lethe_version() -> str:
    try:
        return metadata.version("lethe")
    except metadata.PackageNotFoundError:
        return "unknown"


def _shareable(path: Path) -> Path:
    path.chmod(0o644)  # safetensors writes 0600 whatever the umask; artifacts are shared
    return path


def save_fused(pipeline: Any, folder: Path) -> None:
    """The whole pipeline as a diffusers folder that stock `from_pretrained(folder)` loads and runs on a CPU.

    Every torch component is written in float32: with no dtype argument diffusers loads UNet and VAE as
    float32 but transformers keeps a text encoder's saved dtype, and a float16 text encoder beside a float32
    UNet fails on the CPU. Components held in another dtype are cast for the save and cast back after
    (float16/bfloat16 -> float32 -> back is exact).
    """
    changed: dict[str, torch.dtype] = {}
    for name, component in pipeline.components.items():
        if isinstance(component, torch.nn.Module) and component.dtype != torch.float32:
            changed[name] = component.dtype
            component.to(torch.float32)
    try:
        pipeline.save_pretrained(folder, safe_serialization=True)
    finally:
        for name, dtype in changed.items():
            pipeline.components[name].to(dtype)
    for p in folder.rglob("*.safetensors"):
        _shareable(p)


def _modelspec_architecture(arch: str, pipeline: Any) -> tuple[str, str]:
    """(modelspec.architecture, ss_base_model_version) as A1111 / ComfyUI / kohya tools read them."""
    if arch == "sdxl":
        return "stable-diffusion-xl-v1-base/lora", "sdxl_base_v1-0"
    if arch == "sd2":
        v_pred = pipeline.scheduler.config.get("prediction_type") == "v_prediction"
        return ("stable-diffusion-v2-768-v/lora", "sd_v2_768_v") if v_pred else (
            "stable-diffusion-v2-512/lora", "sd_v2")
    return "stable-diffusion-v1/lora", "sd_v1"


def adapter_metadata(pipeline: Any, arch: str, concepts: list[dict[str, Any]], method: str, rank: int,
                     alpha: float, provenance: Provenance) -> dict[str, str]:
    """safetensors metadata of the kohya copy: ModelSpec and kohya `ss_*` keys for the tools, `lethe.*` keys
    for provenance (base architecture and fingerprint, erased concepts, rank, Lethe version, request id)."""
    architecture, base_version = _modelspec_architecture(arch, pipeline)
    targets = ", ".join(c["target"] for c in concepts)
    return {
        "format": "pt",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": architecture,
        "modelspec.implementation": "diffusers",
        "modelspec.title": f"Lethe erasure: {targets}",
        "modelspec.description": f"LoRA that erases {targets} from its base model ({method}); see README.md.",
        "modelspec.date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": f"{alpha:g}",
        "ss_base_model_version": base_version,
        "ss_v2": str(arch == "sd2"),
        "lethe.base_architecture": arch,
        "lethe.base_fingerprint": provenance.base_fingerprint or "",
        "lethe.base_source": provenance.base_source or "",
        "lethe.base_variant": provenance.base_variant or "",
        "lethe.erased_concepts": json.dumps(concepts),
        "lethe.method": method,
        "lethe.rank": str(rank),
        "lethe.version": lethe_version(),
        "lethe.request_id": provenance.request_id or "",
    }


def write_adapters(pipeline: Any, unet: torch.nn.Module, out_dir: Path, metadata_: dict[str, str]) -> dict[str, Path]:
    """adapter/pytorch_lora_weights.safetensors (diffusers, with peft metadata: reload is exact) and
    adapter/lora_kohya.safetensors (kohya keys with `.alpha`, for ComfyUI / A1111) from the attached LoRA."""
    from safetensors.torch import save_file

    folder = out_dir / ADAPTER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    state, peft_metadata = lora.diffusers_state(unet)
    type(pipeline).save_lora_weights(folder, unet_lora_layers=state, unet_lora_adapter_metadata=peft_metadata)
    save_file(lora.kohya_state(unet), str(folder / KOHYA_ADAPTER), metadata=metadata_)
    return {"diffusers": _shareable(folder / DIFFUSERS_ADAPTER), "kohya": _shareable(folder / KOHYA_ADAPTER)}


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def check_row(name: str, check: dict[str, Any]) -> str:
    """One acceptance check as a row of the model card's table: where the check counted images (the judge's
    held-out images, the canvas grid), how many and the 95 % interval they allow."""
    rule = f">= {_fmt(check['min'])}" if "min" in check else f"<= {_fmt(check.get('max'))}"
    interval = check.get("interval")
    spread = f"{_fmt(interval[0])}-{_fmt(interval[1])}" if interval else ""
    images = check.get("images")
    spread = f"{spread} ({images})".strip() if images else spread or "-"
    return f"| {name} | {_fmt(check['value'])} | {spread} | {rule} | {'yes' if check.get('passed') else 'no'} |"


def write_model_card(out_dir: Path, report: ErasureReport, provenance: Provenance,
                     checks: dict[str, dict[str, Any]] | None) -> Path:
    """README.md: what was erased, how it was verified, and how to load the outputs in diffusers, ComfyUI
    and AUTOMATIC1111."""
    concepts = report.inputs["concepts"]
    arch = report.architecture
    adapter = report.adapter
    pipeline_cls = "StableDiffusionXLPipeline" if arch == "sdxl" else "StableDiffusionPipeline"
    lines = [
        f"# Lethe erasure: {', '.join(c['target'] for c in concepts)}",
        "",
        f"Made by Lethe {lethe_version()} with the `{report.method}` method from a {arch} base model.",
        "",
        "| | |",
        "|---|---|",
        f"| request | `{provenance.request_id or '-'}` |",
        f"| base model | `{provenance.base_source or '-'}` |",
        f"| base fingerprint (sha256 of its weight files) | `{provenance.base_fingerprint or '-'}` |",
        *([f"| base weights | the `{provenance.base_variant}` variant files only |"]
          if provenance.base_variant else []),
        f"| architecture | {arch} |",
        f"| device, dtype | {report.device}, {report.dtype} |",
        "",
        "## What was erased",
        "",
        "| concept | kind | replaced by |",
        "|---|---|---|",
    ]
    for c in concepts:
        lines.append(f"| {c['target']} | {c['kind']} | {report.prompts.surrogates.get(c['target'])} |")
    lines += ["", f"Prompts whose outputs were kept: {len(report.prompts.retain)} "
              f"(e.g. {', '.join(repr(r) for r in report.prompts.retain[:3]) or 'none'})."]
    if adapter:
        lines += ["", f"The change is a LoRA of rank {adapter.rank} (alpha {_fmt(adapter.alpha)}) on "
                  f"{len(adapter.target_modules)} UNet modules; text encoder and VAE are unchanged."]
        if adapter.weight_mask:
            lines += ["A per-weight mask was merged into `fused/` only: the adapter files hold the unmasked "
                      "low-rank factors and differ from `fused/` slightly."]
    else:
        lines += ["", "The method trains UNet weights directly: there is no adapter, only the fused model."]
    lines += ["", "## How it was verified", ""]
    metrics = report.metrics
    probe = metrics.probe
    judge = metrics.judge
    if judge is not None:
        lines += [f"A judge ({judge.judge['name']}) labelled images that the erased and the base model drew from "
                  "held-out prompts (wordings the erasure never trained on), on fixed seeds:", ""]
        for c in judge.concepts:
            lo, hi = c.ua_interval
            lines.append(f"- `{c.concept}`: not recognised in {_fmt(c.ua)} of {c.images} images (95 % "
                         f"interval {_fmt(lo)}-{_fmt(hi)}; base model {_fmt(c.base_ua)}).")
        for r in judge.retention:
            lines.append(f"- other concepts ({r.group}, {r.kind}): recognised {_fmt(r.accuracy_erased)} of "
                         f"{r.images} images against {_fmt(r.accuracy_base)} for the base model.")
        lines.append("")
    lines += [
        "Noise-space probe on the training prompts (a diagnostic: it can fail a run, never pass one): the share of "
        "the gap between the concept's and "
        f"the replacement's noise prediction that the erasure closed is "
        f"{_fmt(probe.forget_gap_closure if probe else None)}; "
        f"the outputs of the kept prompts moved {_fmt(probe.retain_drift_relative if probe else None)} of that gap.",
    ]
    for target, row in (metrics.summary or {}).items():
        lines.append(
            f"- `{target}`: an independent classifier no longer recognises it in {_fmt(row.ua)} of the "
            f"generated images (base {_fmt(row.base_ua)}); other concepts recognised "
            f"{_fmt(row.ira)} (IRA), other kinds {_fmt(row.cra)} (CRA)."
        )
    if checks:
        lines += ["", "Acceptance checks applied before the artifacts were published:", "",
                  "| check | value | 95 % interval (images) | rule | passed |", "|---|---|---|---|---|"]
        lines += [check_row(name, check) for name, check in checks.items()]
    else:
        lines += ["", "No acceptance rule was applied to this run: the numbers above are measurements only."]
    lines += ["", "`report.json` holds every number, the prompts, seeds, library versions and the sha256 of each "
              "file; `grid.png` shows base and erased images side by side.", "", "## Files", "",
              "| file | what | for |", "|---|---|---|",
              f"| `{FUSED_DIR}/` | the whole erased model, float32 | diffusers `from_pretrained` |"]
    if adapter:
        lines += [
            f"| `{ADAPTER_DIR}/{DIFFUSERS_ADAPTER}` | the LoRA in diffusers layout | diffusers `load_lora_weights` |",
            f"| `{ADAPTER_DIR}/{KOHYA_ADAPTER}` | the same LoRA in kohya layout (`lora_unet_*`, `.alpha`), with "
            "metadata | ComfyUI, AUTOMATIC1111, diffusers |",
        ]
    lines += ["", "## Loading it", "", "diffusers, the whole erased model:", "", "```python",
              f"from diffusers import {pipeline_cls}", "",
              f'pipe = {pipeline_cls}.from_pretrained("{FUSED_DIR}")', "```"]
    if adapter:
        # A variant-only base loads only with its variant named; without a dtype its text encoder would stay
        # in the files' float16, which a CPU cannot run beside a float32 UNet.
        load_base = (f'pipe = {pipeline_cls}.from_pretrained("path/to/base", variant="{provenance.base_variant}", '
                     "dtype=torch.float32)  # torch.float16 on a GPU" if provenance.base_variant
                     else f'pipe = {pipeline_cls}.from_pretrained("path/to/base")')
        lines += [
            "", "diffusers, the adapter on the base model (the base must have the fingerprint above):", "",
            "```python", *(["import torch"] if provenance.base_variant else []),
            f"from diffusers import {pipeline_cls}", "",
            load_base,
            f'pipe.load_lora_weights("{ADAPTER_DIR}", weight_name="{DIFFUSERS_ADAPTER}")',
            f'# or the kohya copy: pipe.load_lora_weights("{ADAPTER_DIR}", weight_name="{KOHYA_ADAPTER}")',
            "```", "",
            f"ComfyUI: copy `{ADAPTER_DIR}/{KOHYA_ADAPTER}` into `ComfyUI/models/loras/`, load the base checkpoint "
            "and add a *LoraLoaderModelOnly* node (strength 1.0) between the checkpoint and the sampler. Only the "
            "UNet changed, so no CLIP strength is needed.", "",
            f"AUTOMATIC1111: copy `{ADAPTER_DIR}/{KOHYA_ADAPTER}` into `stable-diffusion-webui/models/Lora/` "
            "(rename it as you like, e.g. `lethe-erasure.safetensors`) and add `<lora:lethe-erasure:1>` to the "
            "prompt. A weight other than 1 weakens or overshoots the erasure.",
        ]
    path = out_dir / MODEL_CARD
    path.write_text("\n".join(lines) + "\n")
    return path
