"""`erase(pipeline, spec, config)`: the one entry point the worker, the CLI and the benchmarks call.

What every method shares runs here: checks, the samples stage (core.spare.training_data), the before/after
grid, evaluation (noise-space probe plus the caller's evaluator), outputs and the typed report
(core.spare.report.ErasureReport, dumped to report.json). The method itself (core.spare.methods: SPARE, ESD)
trains in between. Stages (names passed to `progress`): core.spare.stages.STAGES.
The caller's pipeline is left as it was: adapters are removed and every weight that was changed in place
(for saving fused/) is restored from a copy of just those tensors.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.filehash import file_sha256
from core.spare import adapters as lora
from core.spare.base_outputs import BaseOutputs
from core.spare.conditioning import PromptEncoder, training_scheduler
from core.spare.errors import ErasureInputError
from core.spare.evaluator import Evaluator
from core.spare.loading import architecture_of, resolve_device
from core.spare.memory import PeakMemory
from core.spare.methods import ErasureMethod, MethodRun, method_for
from core.spare.outputs import (
    ADAPTER_DIR,
    DIFFUSERS_ADAPTER,
    FUSED_DIR,
    Provenance,
    Verifier,
    dir_bytes,
    generate_images,
    library_versions,
    list_files,
    write_grid,
    write_model_card,
    write_report,
)
from core.spare.probe import probe_metrics
from core.spare.report import (
    EngineMetrics,
    ErasureReport,
    ErasureResult,
    FileEntry,
    GridImages,
    Memory,
    Seeds,
    Sizes,
)
from core.spare.samples import check_images
from core.spare.specs import ErasureSpec, EsdConfig, SpareConfig
from core.spare.stages import STAGES, ProgressFn, StageClock, StopFn
from core.spare.training_data import prepare

__all__ = ["STAGES", "ErasureResult", "ProgressFn", "StopFn", "erase"]


def _resolve_dtype(config: SpareConfig | EsdConfig, device: str) -> torch.dtype | None:
    if device != "cuda":
        return None  # float32 on CPU: deterministic, and CPU autocast is slower than fp32 here
    return {"auto": torch.bfloat16, "float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.dtype]


def _validate(pipeline: Any, spec: ErasureSpec, config: SpareConfig | EsdConfig, method: ErasureMethod) -> str:
    arch = architecture_of(pipeline)
    if spec.method != config.method:
        raise ErasureInputError(f"the request asks for method {spec.method!r} but the config is for {config.method!r}")
    check_images(spec)
    if pipeline.unet.device.type == "cpu" and pipeline.unet.dtype != torch.float32 and config.device != "cuda":
        raise ErasureInputError(
            f"the pipeline is loaded in {pipeline.unet.dtype} on the CPU; load it in float32 "
            "(core.spare.loading.load_pipeline does) or run on CUDA"
        )
    method.check(pipeline, config)
    return arch


def _unet_bytes(unet: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in unet.parameters())


def erase(
    pipeline: Any,
    spec: ErasureSpec,
    config: SpareConfig | EsdConfig | None = None,
    *,
    out_dir: Path,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    evaluator: Evaluator | None = None,
    provenance: Provenance | None = None,
    verifier: Verifier | None = None,
    base_outputs: BaseOutputs | None = None,
    grid_wanted: Callable[[EngineMetrics], bool] | None = None,
) -> ErasureResult:
    """Erase the spec's concepts from `pipeline`; write adapter/, fused/, README.md, report.json and grid.png.

    `provenance` (request id, base fingerprint and source) goes into the adapter metadata and the model card;
    `verifier(metrics)` is the caller's acceptance rule, whose checks the model card lists. `base_outputs`:
    what earlier rounds of the job drew from the same base weights (teacher samples, the grid's base half).
    `grid_wanted(metrics)`, asked with the round's metrics once the evaluator has run: False leaves grid.png out
    (a round of erase-until-verified that will not be kept; `core.spare.rounds` draws it for a kept round that
    lacks it). None: always drawn.
    """
    provenance = provenance or Provenance()
    method = method_for(config.method if config is not None else spec.method)
    if config is None:
        config = method.config_type()  # type: ignore[assignment]
    assert config is not None
    arch = _validate(pipeline, spec, config, method)
    device = resolve_device(config.device)
    dtype = _resolve_dtype(config, device)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ErasureInputError(f"output path {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ErasureInputError(f"output folder {out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.set_flush_denormal(True)
    if str(pipeline.unet.device) != device and not str(pipeline.unet.device).startswith(device):
        pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    unet = pipeline.unet
    grad_flags = {n: p.requires_grad for n, p in unet.named_parameters()}
    started = time.time()
    with PeakMemory() as memory:
        clock = StageClock(progress, should_stop, memory)
        originals: dict[str, torch.Tensor] = {}
        try:
            if config.gradient_checkpointing:
                unet.enable_gradient_checkpointing()
            report = _erase_inner(pipeline, arch, spec, config, method, out_dir, clock, device, dtype, evaluator,
                                  originals, provenance, verifier, base_outputs, grid_wanted)
        finally:
            if getattr(unet, "_hf_peft_config_loaded", False) and lora.ADAPTER_NAME in getattr(unet, "peft_config", {}):
                lora.detach(unet)
            _restore(unet, originals)
            if config.gradient_checkpointing:
                unet.disable_gradient_checkpointing()
            for n, p in unet.named_parameters():
                p.requires_grad_(grad_flags.get(n, False))
        clock.end()
    report.timings_s = {**clock.timings, "total": round(time.time() - started, 3)}
    report.memory = Memory.model_validate(memory.report())
    files = list_files(out_dir)
    report.files = {name: FileEntry(sha256=file_sha256(p), bytes=p.stat().st_size) for name, p in files.items()}
    files["report.json"] = write_report(out_dir, report)
    return ErasureResult(out_dir=out_dir, report=report, files=files)


def _restore(unet: nn.Module, originals: dict[str, torch.Tensor]) -> None:
    params = dict(unet.named_parameters())
    with torch.no_grad():
        for name, value in originals.items():
            param = params[name]
            if param.dtype != value.dtype:
                param.data = value.clone()
            else:
                param.copy_(value)
    originals.clear()


def _erase_inner(
    pipeline: Any, arch: str, spec: ErasureSpec, config: SpareConfig | EsdConfig, method: ErasureMethod,
    out_dir: Path, clock: StageClock, device: str, dtype: torch.dtype | None, evaluator: Evaluator | None,
    originals: dict[str, torch.Tensor], provenance: Provenance, verifier: Verifier | None,
    base_outputs: BaseOutputs | None, grid_wanted: Callable[[EngineMetrics], bool] | None,
) -> ErasureReport:
    unet = pipeline.unet
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(config.seed)
    encoder = PromptEncoder(pipeline, arch, dev)
    seeds = Seeds(run=config.seed, grid=[config.seed + i for i in range(config.grid_seeds)])

    clock.begin("samples")
    prepared = prepare(pipeline, spec, config, clock, encoder, dev, base_outputs)
    grid = GridImages(prompts=prepared.grid_prompts, kinds=prepared.grid_kinds, seeds=seeds.grid)
    before = generate_images(pipeline, grid.prompts, grid.seeds, steps=config.sample_steps,
                             guidance=config.guidance_scale,
                             memo=base_outputs.images if base_outputs is not None else None)

    noise = training_scheduler(pipeline.scheduler)  # the forward process, for the method and the probe
    outcome = method.train(MethodRun(pipeline, spec, prepared.data, clock, gen, dtype, out_dir, originals, encoder,
                                     arch, provenance, noise), config)

    # --- evaluate (erased weights are in place; `originals` holds what they replaced) --------------------
    clock.begin("evaluate")
    repel = config.forget_repel if isinstance(config, SpareConfig) else 0.0
    probe = probe_metrics(unet, noise, prepared.data, originals, dtype, config.seed,
                          [c.target for c in spec.concepts], repel=repel)
    clock.tick(0.2)

    def draw_after(erased: Any, metrics: EngineMetrics) -> list[list[Any]] | None:
        if grid_wanted is not None and not grid_wanted(metrics):
            return None
        return generate_images(erased, grid.prompts, grid.seeds, steps=config.sample_steps,
                               guidance=config.guidance_scale)

    if evaluator is not None:
        erased_unet = copy.deepcopy(unet)
        _restore(unet, originals)
        erased_pipe = type(pipeline)(**{**pipeline.components, "unet": erased_unet})
        erased_pipe.set_progress_bar_config(disable=True)
        metrics = EngineMetrics.model_validate({**evaluator(erased_pipe, pipeline), "probe": probe})
        clock.tick(0.8)
        after = draw_after(erased_pipe, metrics)  # after the evaluator: it decides whether this erasure is kept
        del erased_pipe, erased_unet
    else:
        metrics = EngineMetrics.model_validate({"probe": probe})
        after = draw_after(pipeline, metrics)

    # --- write ---------------------------------------------------------------------------------------------
    clock.begin("write")
    if after is not None:
        write_grid(grid.prompts, grid.kinds, grid.seeds, before, after, out_dir / "grid.png")
    unet_bytes = _unet_bytes(unet)
    adapter_path = out_dir / ADAPTER_DIR / DIFFUSERS_ADAPTER
    adapter_bytes = adapter_path.stat().st_size if adapter_path.exists() else None
    report = ErasureReport(
        method=config.method,
        architecture=arch,
        inputs=spec.model_dump(mode="json"),
        config=config.model_dump(mode="json"),
        device=device,
        dtype=str(dtype or torch.float32).replace("torch.", ""),
        seeds=seeds,
        versions=library_versions(),
        prompts=prepared.prompts,
        saliency=outcome.saliency,
        timesteps=outcome.timesteps,
        loss_curve=outcome.loss_curve,
        adapter=outcome.adapter,
        esd=outcome.esd,
        metrics=metrics,
        grid=grid,
        sizes=Sizes(unet_bytes=unet_bytes, adapter_bytes=adapter_bytes,
                    adapter_fraction_of_unet=(adapter_bytes / unet_bytes) if adapter_bytes else None,
                    fused_bytes=dir_bytes(out_dir / FUSED_DIR)),
    )
    write_model_card(out_dir, report, provenance, verifier(metrics) if verifier is not None else None)
    return report
