"""`erase(pipeline, spec, config)`: the one entry point the worker, the CLI and the benchmarks call.

Stages (names passed to `progress`): samples → saliency → timesteps → distill → fuse → evaluate → write.
The caller's pipeline is left as it was: adapters are removed and every weight that was changed in place
(for saving fused/) is restored from a copy of just those tensors.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from core.spare import adapters as lora
from core.spare.adversary import ForgetAdversary
from core.spare.conditioning import Cond, PromptEncoder, unet_eps
from core.spare.distill import DistillData, distill
from core.spare.errors import ErasureCancelled, ErasureInputError
from core.spare.esd import esd_parameters, esd_train
from core.spare.loading import architecture_of, resolve_device
from core.spare.memory import PeakMemory
from core.spare.outputs import (
    ADAPTER_DIR,
    DIFFUSERS_ADAPTER,
    FUSED_DIR,
    Provenance,
    Verifier,
    adapter_metadata,
    dir_bytes,
    generate_images,
    library_versions,
    list_files,
    save_fused,
    sha256_file,
    write_adapters,
    write_grid,
    write_json,
    write_model_card,
)
from core.spare.prompting import tokens_of
from core.spare.saliency import candidate_modules, compute_saliency
from core.spare.samples import (
    SampleSet,
    check_images,
    encode_images,
    forget_prompts,
    generate_latents,
    retain_prompts,
    surrogate_prompt,
)
from core.spare.specs import ErasureSpec, EsdConfig, SpareConfig
from core.spare.timesteps import concept_sampler, uniform_sampler

ProgressFn = Callable[[str, float], None]
StopFn = Callable[[], bool]
# evaluator(erased_pipeline, base_pipeline) -> metrics dict; the testbed's evaluator scores UA/IRA/CRA.
Evaluator = Callable[[Any, Any], dict[str, Any]]

STAGES = ("samples", "saliency", "timesteps", "distill", "fuse", "evaluate", "write")
_MAX_CURVE_POINTS = 1000


@dataclass
class ErasureResult:
    out_dir: Path
    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


class _Run:
    """Per-run bookkeeping: progress, stop polling, stage timings and memory."""

    def __init__(self, progress: ProgressFn | None, should_stop: StopFn | None, memory: PeakMemory) -> None:
        self.progress = progress
        self.should_stop = should_stop
        self.memory = memory
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._t0 = 0.0

    def begin(self, stage: str) -> None:
        self.end()
        self.check_stop()
        self._stage, self._t0 = stage, time.perf_counter()
        self.memory.stage(stage)
        self.tick(0.0)

    def end(self) -> None:
        if self._stage is not None:
            self.timings[self._stage] = round(time.perf_counter() - self._t0, 4)
            self.tick(1.0)
            self._stage = None

    def tick(self, fraction: float) -> None:
        if self.progress is not None and self._stage is not None:
            self.progress(self._stage, min(1.0, max(0.0, fraction)))

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise ErasureCancelled(f"erasure cancelled before stage {self._stage or 'start'}")


def _resolve_dtype(config: SpareConfig | EsdConfig, device: str) -> torch.dtype | None:
    if device != "cuda":
        return None  # float32 on CPU: deterministic, and CPU autocast is slower than fp32 here
    return {"auto": torch.bfloat16, "float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.dtype]


def _validate(pipeline: Any, spec: ErasureSpec, config: SpareConfig | EsdConfig) -> str:
    arch = architecture_of(pipeline)
    if spec.method != config.method:
        raise ErasureInputError(f"the request asks for method {spec.method!r} but the config is for {config.method!r}")
    check_images(spec)
    if pipeline.unet.device.type == "cpu" and pipeline.unet.dtype != torch.float32 and config.device != "cuda":
        raise ErasureInputError(
            f"the pipeline is loaded in {pipeline.unet.dtype} on the CPU; load it in float32 "
            "(core.spare.loading.load_pipeline does) or run on CUDA"
        )
    if isinstance(config, SpareConfig) and not candidate_modules(pipeline.unet, config.saliency_pool):
        raise ErasureInputError(f"the UNet has no module in the saliency pool {config.saliency_pool!r}")
    return arch


def _curve(values: list[float]) -> list[float]:
    if len(values) <= _MAX_CURVE_POINTS:
        return [round(v, 6) for v in values]
    stride = len(values) / _MAX_CURVE_POINTS
    return [round(values[int(i * stride)], 6) for i in range(_MAX_CURVE_POINTS)]


def _unet_bytes(unet: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in unet.parameters())


@torch.no_grad()
def _probe_metrics(
    unet: nn.Module, scheduler: Any, data: DistillData, originals: dict[str, torch.Tensor], dtype: torch.dtype | None,
    seed: int, concept_names: list[str],
) -> dict[str, Any]:
    """Noise-space erasure metrics on a fixed batch, erased UNet (weights in place) vs the original tensors.

    forget_gap: ‖ε_erased(x_t, c_forget) − ε_base(x_t, c_surrogate)‖² (0 = concept fully mapped to surrogate),
    with base_forget_gap the same for the unerased model; retain_drift: ‖ε_erased(c_r) − ε_base(c_r)‖².
    """
    gen = torch.Generator().manual_seed(seed + 7)
    device = data.forget.latents.device
    n = min(32, data.forget.latents.shape[0])
    m = min(16, data.retain.latents.shape[0])
    fi = torch.randperm(data.forget.latents.shape[0], generator=gen)[:n]
    ri = torch.randperm(data.retain.latents.shape[0], generator=gen)[:m]
    x0 = torch.cat([data.forget.latents[fi.to(device)], data.retain.latents[ri.to(device)]])
    noise = torch.randn(x0.shape, generator=gen).to(device)
    t = torch.randint(0, int(scheduler.config.num_train_timesteps), (n + m,), generator=gen).to(device)
    x_t = scheduler.add_noise(x0, noise, t)
    student = Cond.cat([data.forget_cond.index(fi), data.retain_cond.index(ri)])
    teacher = Cond.cat([data.surrogate_cond.index(fi), data.retain_cond.index(ri)])

    def base(cond: Cond) -> torch.Tensor:
        kwargs: dict[str, Any] = {"encoder_hidden_states": cond.hidden, "return_dict": False}
        if cond.text_embeds is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": cond.text_embeds, "time_ids": cond.time_ids}
        return functional_call(unet, originals, (x_t, t), kwargs)[0].float()

    erased = unet_eps(unet, x_t, t, student, dtype).float()
    base_student, base_teacher = base(student), base(teacher)
    gap = ((erased[:n] - base_teacher[:n]) ** 2).mean()
    base_gap = ((base_student[:n] - base_teacher[:n]) ** 2).mean()
    drift = ((erased[n:] - base_teacher[n:]) ** 2).mean()
    scale = (base_teacher[n:] ** 2).mean()
    per_concept: dict[str, float] = {}
    assert data.forget.concept_index is not None
    concept_of = data.forget.concept_index[fi]
    for c, name in enumerate(concept_names):
        sel = (concept_of == c).to(device)
        if bool(sel.any()):
            g = ((erased[:n][sel] - base_teacher[:n][sel]) ** 2).mean()
            b = ((base_student[:n][sel] - base_teacher[:n][sel]) ** 2).mean()
            per_concept[name] = float(1 - g / b) if float(b) > 0 else 0.0
    return {
        "forget_gap_closure_per_concept": per_concept,  # type: ignore[dict-item]
        "base_forget_gap": float(base_gap),
        "forget_gap": float(gap),
        "forget_gap_closure": float(1 - gap / base_gap) if float(base_gap) > 0 else 0.0,
        "retain_drift": float(drift),
        "retain_drift_relative": float(drift / scale) if float(scale) > 0 else 0.0,
    }


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
) -> ErasureResult:
    """Erase the spec's concepts from `pipeline`; write adapter/, fused/, README.md, report.json and grid.png.

    `provenance` (request id, base fingerprint and source) goes into the adapter metadata and the model card;
    `verifier(metrics)` is the caller's acceptance rule, whose checks the model card lists.
    """
    provenance = provenance or Provenance()
    if config is None:
        config = SpareConfig() if spec.method == "spare" else EsdConfig()
    arch = _validate(pipeline, spec, config)
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
        run = _Run(progress, should_stop, memory)
        originals: dict[str, torch.Tensor] = {}
        try:
            if config.gradient_checkpointing:
                unet.enable_gradient_checkpointing()
            report, metrics = _erase_inner(
                pipeline, arch, spec, config, out_dir, run, device, dtype, evaluator, originals, provenance, verifier
            )
        finally:
            if getattr(unet, "_hf_peft_config_loaded", False) and lora.ADAPTER_NAME in getattr(unet, "peft_config", {}):
                lora.detach(unet)
            _restore(unet, originals)
            if config.gradient_checkpointing:
                unet.disable_gradient_checkpointing()
            for n, p in unet.named_parameters():
                p.requires_grad_(grad_flags.get(n, False))
        run.end()
    report["timings_s"] = {**run.timings, "total": round(time.time() - started, 3)}
    report["memory"] = memory.report()
    files = list_files(out_dir)
    report["files"] = {name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for name, p in files.items()}
    write_json(out_dir / "report.json", report)
    files["report.json"] = out_dir / "report.json"
    return ErasureResult(out_dir=out_dir, report=report, files=files, metrics=metrics)


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
    pipeline: Any, arch: str, spec: ErasureSpec, config: SpareConfig | EsdConfig, out_dir: Path, run: _Run,
    device: str, dtype: torch.dtype | None, evaluator: Evaluator | None, originals: dict[str, torch.Tensor],
    provenance: Provenance, verifier: Verifier | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    unet = pipeline.unet
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(config.seed)
    encoder = PromptEncoder(pipeline, arch, dev)
    report: dict[str, Any] = {
        "method": config.method,
        "architecture": arch,
        "inputs": spec.model_dump(mode="json"),
        "config": config.model_dump(mode="json"),
        "device": device,
        "dtype": str(dtype or torch.float32).replace("torch.", ""),
        "seeds": {"run": config.seed, "grid": [config.seed + i for i in range(config.grid_seeds)]},
        "versions": library_versions(),
    }

    # --- samples -----------------------------------------------------------------------------------------
    run.begin("samples")
    tokens = tokens_of(getattr(pipeline, "tokenizer", None), spec)
    retain = retain_prompts(spec, config.max_retain_prompts, tokens)
    f_prompts, f_surr, f_concept, image_latents = [], [], [], []
    per_concept_prompts: dict[str, list[str]] = {}
    for ci, concept in enumerate(spec.concepts):
        prompts = forget_prompts(concept, spec.retain, config.max_forget_prompts, tokens)
        per_concept_prompts[concept.target] = prompts
        if concept.example_images:
            # Each example image trains the concept's prompts in turn.
            image_latents.append(encode_images(pipeline, list(concept.example_images), dev))
            for k in range(len(concept.example_images)):
                p = prompts[k % len(prompts)]
                f_prompts.append(p)
                f_surr.append(surrogate_prompt(p, concept))
                f_concept.append(ci)
            continue
        for p in prompts:
            for _ in range(config.samples_per_prompt):
                f_prompts.append(p)
                f_surr.append(surrogate_prompt(p, concept))
                f_concept.append(ci)
    gen_prompts = [p for p, ci in zip(f_prompts, f_concept, strict=True) if not spec.concepts[ci].example_images]
    unique_gen = list(dict.fromkeys(gen_prompts))
    anchor = getattr(config, "forget_anchor", "concept")
    n_anchor = len(set(f_surr)) if anchor != "concept" else 0
    total_jobs = (len(unique_gen) + len(retain)) * config.samples_per_prompt + n_anchor
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        run.tick(done[0] / max(1, total_jobs) * 0.8)
        run.check_stop()

    gen_lat = (
        generate_latents(pipeline, unique_gen, seed=config.seed, steps=config.sample_steps,
                         guidance=config.guidance_scale, per_prompt=config.samples_per_prompt, tick=tick)
        if unique_gen else None
    )
    # Assemble forget latents in f_prompts order: generated ones by (prompt, k), images in their order.
    forget_latents, used = [], dict.fromkeys(unique_gen, 0)
    img_iter = iter(torch.cat(image_latents)) if image_latents else iter(())
    for p, ci in zip(f_prompts, f_concept, strict=True):
        if spec.concepts[ci].example_images:
            forget_latents.append(next(img_iter))
        else:
            k = used[p]
            used[p] += 1
            assert gen_lat is not None
            forget_latents.append(gen_lat[unique_gen.index(p) * config.samples_per_prompt + k])
    forget = SampleSet(torch.stack(forget_latents).to(dev), f_prompts, f_surr, torch.tensor(f_concept))
    retain_lat = generate_latents(pipeline, retain, seed=config.seed + 500_000, steps=config.sample_steps,
                                  guidance=config.guidance_scale, per_prompt=config.samples_per_prompt, tick=tick)
    retain_set = SampleSet(retain_lat.to(dev), [p for p in retain for _ in range(config.samples_per_prompt)])
    data = DistillData(
        forget, encoder.encode(forget.prompts), encoder.encode(forget.surrogates),
        retain_set, encoder.encode(retain_set.prompts),
    )
    if anchor != "concept":
        # One teacher generation per distinct surrogate prompt: where the erased model should end up.
        unique_surr = list(dict.fromkeys(f_surr))
        surr_lat = generate_latents(pipeline, unique_surr, seed=config.seed + 250_000, steps=config.sample_steps,
                                    guidance=config.guidance_scale, per_prompt=1, tick=tick)
        data.anchors = surr_lat[[unique_surr.index(s) for s in f_surr]].to(dev)
        data.anchor_share = 1.0 if anchor == "surrogate" else 0.5
    grid_prompts, grid_kinds = [], []
    for concept in spec.concepts[:4]:
        for p in per_concept_prompts[concept.target][: 2 if len(spec.concepts) > 1 else 3]:
            grid_prompts.append(p)
            grid_kinds.append("forget")
    for r in [*[r for r in retain if r][:3], ""]:
        grid_prompts.append(r)
        grid_kinds.append("retain")
    grid_seeds = report["seeds"]["grid"]
    before = generate_images(pipeline, grid_prompts, grid_seeds, steps=config.sample_steps,
                             guidance=config.guidance_scale)
    report["prompts"] = {
        "forget": per_concept_prompts,
        "surrogates": {c.target: c.surrogate_text() for c in spec.concepts},
        "retain": retain,
        "forget_samples": len(f_prompts),
        "retain_samples": len(retain_set.prompts),
        "example_images": sum(len(c.example_images) for c in spec.concepts),
        "forget_anchor": anchor,
        "anchor_samples": n_anchor,
    }

    if isinstance(config, SpareConfig):
        _spare(pipeline, config, data, run, gen, dtype, report, out_dir, originals, spec, provenance)
    else:
        _esd(pipeline, config, data, run, gen, dtype, report, out_dir, originals, encoder)

    # --- evaluate (erased weights are in place; `originals` holds what they replaced) --------------------
    run.begin("evaluate")
    metrics: dict[str, Any] = {"probe": _probe_metrics(
        unet, pipeline.scheduler, data, originals, dtype, config.seed, [c.target for c in spec.concepts]
    )}
    run.tick(0.2)
    after = generate_images(pipeline, grid_prompts, grid_seeds, steps=config.sample_steps,
                            guidance=config.guidance_scale)
    run.tick(0.4)
    if evaluator is not None:
        erased_unet = copy.deepcopy(unet)
        _restore(unet, originals)
        erased_pipe = type(pipeline)(**{**pipeline.components, "unet": erased_unet})
        erased_pipe.set_progress_bar_config(disable=True)
        metrics.update(evaluator(erased_pipe, pipeline))
        del erased_pipe, erased_unet
    report["metrics"] = metrics

    # --- write ---------------------------------------------------------------------------------------------
    run.begin("write")
    write_grid(grid_prompts, grid_kinds, grid_seeds, before, after, out_dir / "grid.png")
    report["grid"] = {"prompts": grid_prompts, "kinds": grid_kinds, "seeds": grid_seeds}
    unet_bytes = _unet_bytes(unet)
    adapter_path = out_dir / ADAPTER_DIR / DIFFUSERS_ADAPTER
    adapter_bytes = adapter_path.stat().st_size if adapter_path.exists() else None
    fused_bytes = dir_bytes(out_dir / FUSED_DIR)
    report["sizes"] = {
        "unet_bytes": unet_bytes,
        "adapter_bytes": adapter_bytes,
        "adapter_fraction_of_unet": (adapter_bytes / unet_bytes) if adapter_bytes else None,
        "fused_bytes": fused_bytes,
    }
    write_model_card(out_dir, report, provenance, verifier(metrics) if verifier is not None else None)
    return report, metrics


def _save_fused(pipeline: Any, out_dir: Path, run: _Run) -> None:
    run.tick(0.5)
    save_fused(pipeline, out_dir / FUSED_DIR)


def _spare(
    pipeline: Any, config: SpareConfig, data: DistillData, run: _Run, gen: torch.Generator,
    dtype: torch.dtype | None, report: dict[str, Any], out_dir: Path, originals: dict[str, torch.Tensor],
    spec: ErasureSpec, provenance: Provenance,
) -> None:
    unet = pipeline.unet
    n_concepts = len(spec.concepts)
    run.begin("saliency")
    sal = compute_saliency(unet, pipeline.scheduler, data.forget.latents, data.forget_cond, config,
                           dtype=dtype, generator=gen, tick=run.tick)
    report["saliency"] = sal.report()

    run.begin("timesteps")
    if config.timesteps == "concept":
        sampler = concept_sampler(
            unet, pipeline.scheduler, data.forget.latents, data.forget_cond, data.surrogate_cond,
            data.forget.concept_index.to(data.forget.latents.device), n_concepts,
            grid_size=config.timestep_grid, gamma=config.timestep_gamma, uniform_mix=config.timestep_uniform_mix,
            generator=gen, dtype=dtype, tick=run.tick,
        )
    else:
        sampler = uniform_sampler(n_concepts, int(pipeline.scheduler.config.num_train_timesteps))

    run.begin("distill")
    ranks = lora.rank_pattern(sal.selected, sal.shares, config.rank, config.rank_follows_saliency)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # LoRA A init draws from the global RNG: seed it, leave the caller's as is
        lora_cfg = lora.attach(unet, sal.selected, config.rank, config.alpha, ranks)
    layers = list(lora.lora_layers(unet).values())
    masks = lora.WeightMasks(unet, sal.masks) if sal.masks else None
    trainable = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    adversary = None
    if config.adversarial_steps:
        adversary = ForgetAdversary(data.forget_cond, config.adversarial_steps, config.adversarial_radius,
                                    config.adversarial_step_size)
    log = distill(
        unet, pipeline.scheduler, data, sampler, steps=config.steps, lr=config.lr, batch_size=config.batch_size,
        w_forget=config.w_forget, w_retain=config.w_retain, generator=gen, dtype=dtype, tuner_layers=layers,
        adversary=adversary,
        should_stop=run.should_stop, tick=lambda s, _loss: run.tick(s / config.steps),
    )
    report["timesteps"] = sampler.report(log.timesteps)
    report["loss_curve"] = {
        "total": _curve(log.loss), "forget": _curve(log.forget_loss), "retain": _curve(log.retain_loss),
    }
    if log.adversarial_loss:
        report["loss_curve"]["adversarial"] = _curve(log.adversarial_loss)
    report["adapter"] = {
        "target_modules": sal.selected,
        "rank": config.rank,
        "alpha": lora_cfg.lora_alpha,
        "rank_pattern": ranks,
        "trainable_parameters": trainable,
        "weight_mask": bool(sal.masks),
        "portable_adapter_note": (
            "adapter/ holds the unmasked low-rank factors; the per-weight mask is merged only into fused/"
            if sal.masks else "adapter/ + base equals fused/ (to float tolerance)"
        ),
    }

    run.begin("fuse")
    concepts = [{"target": c.target, "surrogate": c.surrogate_text(), "kind": c.kind} for c in spec.concepts]
    metadata = adapter_metadata(pipeline, report["architecture"], concepts, config.method, config.rank,
                                float(lora_cfg.lora_alpha), provenance)
    write_adapters(pipeline, unet, out_dir, metadata)
    delta = lora.deltas(unet, sal.masks)
    if masks is not None:
        masks.remove()
    lora.detach(unet)
    modules = dict(unet.named_modules())
    with torch.no_grad():
        for name, d in delta.items():
            weight = modules[name].weight
            originals[f"{name}.weight"] = weight.detach().clone()
            weight.add_(d.to(weight.dtype).reshape(weight.shape))
    _save_fused(pipeline, out_dir, run)


def _esd(
    pipeline: Any, config: EsdConfig, data: DistillData, run: _Run, gen: torch.Generator,
    dtype: torch.dtype | None, report: dict[str, Any], out_dir: Path, originals: dict[str, torch.Tensor],
    encoder: PromptEncoder,
) -> None:
    unet = pipeline.unet
    params = esd_parameters(unet, config.train)
    unet.requires_grad_(False)
    for name, p in params.items():
        originals[name] = p.detach().clone()
        if p.dtype != torch.float32:
            p.data = p.data.float()  # bf16 updates vanish (field notes); trained tensors are float32
        p.requires_grad_(True)
    run.begin("distill")
    # ESD trains on the concept prompts themselves (the forget prompts of every concept).
    concept_prompts = list(dict.fromkeys(data.forget.prompts))
    log = esd_train(
        pipeline, params, originals, encoder.encode(concept_prompts), encoder.encode([""]),
        steps=config.steps, lr=config.lr, eta=config.negative_guidance, batch_size=config.batch_size,
        ddim_steps=config.sample_steps, start_guidance=config.start_guidance, generator=gen, dtype=dtype,
        should_stop=run.should_stop, tick=lambda s, _loss: run.tick(s / config.steps),
    )
    report["loss_curve"] = {"total": _curve(log.loss)}
    report["esd"] = {"trained_parameters": sum(p.numel() for p in params.values()), "train": config.train}
    report["timesteps"] = {"mode": "esd-ddim", "sampled": log.timesteps[:_MAX_CURVE_POINTS]}
    report["adapter"] = None
    run.begin("fuse")
    unet.requires_grad_(False)
    if dtype is not None:
        for name, p in params.items():
            p.data = p.data.to(originals[name].dtype)
    _save_fused(pipeline, out_dir, run)

