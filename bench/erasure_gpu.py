"""GPU benchmark: SPARE vs ESD on an SD-1.5-sized pipeline with random weights, 512 px, bf16.

The pipeline is built from SD 1.5's published config shapes (UNet 320/640/1280/1280, cross-attention 768,
CLIP-L text encoder, the standard VAE), so seconds and peak GPU memory are those of the real model size;
what is erased is meaningless (random weights). Measures: sampling alone (the memory reference), saliency,
N SPARE distillation steps, N ESD-x steps. Prints a table last and writes bench/results/erasure_gpu.json.

    python bench/erasure_gpu.py                 # on a CUDA machine, < 5 minutes
    python bench/erasure_gpu.py --dry-run       # tiny shapes on CPU: checks the script end to end
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"


SD15_UNET = dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                 cross_attention_dim=768, attention_head_dim=8)


def unet_config(sizes: dict[str, Any]) -> dict[str, Any]:
    return dict(
        in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        **sizes,
    )


def build_pipeline(dry_run: bool) -> Any:
    """SD 1.5 shapes (or tiny ones for --dry-run), random weights, no network."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.tiny_pipelines import tiny_tokenizer

    tok = tiny_tokenizer()
    if dry_run:
        unet_kw = dict(sample_size=16, block_out_channels=(32, 64, 64, 64), layers_per_block=1, norm_num_groups=8,
                       cross_attention_dim=64, attention_head_dim=8)
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
        vae_kw = dict(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=128)
    else:
        tok.model_max_length = 77
        unet_kw = SD15_UNET
        text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        vae_kw = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512)
    unet = UNet2DConditionModel(**unet_config(unet_kw))
    te = CLIPTextModel(CLIPTextConfig(
        vocab_size=max(49408, len(tok.get_vocab())) if not dry_run else len(tok.get_vocab()),
        max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, projection_dim=768, **text,
    ))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, **vae_kw,
    )
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure_sampling(pipe: Any, steps: int, batch: int) -> dict[str, float]:
    cuda = pipe.unet.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    pipe(["a photo of a circle"] * batch, num_inference_steps=steps, output_type="latent",
         generator=torch.Generator().manual_seed(0))
    if cuda:
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - t0,
            "peak_gpu_bytes": int(torch.cuda.max_memory_allocated()) if cuda else 0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.spare import ConceptSpec, ErasureSpec, EsdConfig, SpareConfig, erase

    torch.set_flush_denormal(True)
    if args.dry_run:
        torch.set_num_threads(1)  # a shared CPU: more threads only oversubscribe
        args.steps, args.sample_steps, args.prompts = min(args.steps, 2), min(args.sample_steps, 2), 2
    device = "cpu" if args.dry_run else args.device
    dtype = torch.float32 if device == "cpu" else {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    t0 = time.perf_counter()
    pipe = build_pipeline(args.dry_run).to(device, dtype)
    build_s = time.perf_counter() - t0
    unet_params = sum(p.numel() for p in pipe.unet.parameters())
    sampling = measure_sampling(pipe, args.sample_steps, args.batch_size)
    common = dict(device=device, dtype="float32" if device == "cpu" else ("bfloat16" if args.dtype == "bf16"
                  else "float16"), batch_size=args.batch_size, sample_steps=args.sample_steps,
                  max_forget_prompts=args.prompts, max_retain_prompts=args.prompts, grid_seeds=1,
                  gradient_checkpointing=args.gradient_checkpointing)
    rows: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="lethe-gpu-bench-"))
    try:
        for method, config in (
            ("spare", SpareConfig(steps=args.steps, **common)),
            ("esd", EsdConfig(steps=args.steps, **common)),
        ):
            spec = ErasureSpec(concepts=[ConceptSpec(target="circle")], retain=["a photo of a dog"], method=method)
            res = erase(pipe, spec, config, out_dir=tmp / method)
            rep = res.report
            rows[method] = {
                "timings_s": rep.timings_s,
                "memory": rep.memory.model_dump(mode="json") if rep.memory else None,
                "adapter_bytes": rep.sizes.adapter_bytes,
                "fused_bytes": rep.sizes.fused_bytes,
            }
            shutil.rmtree(tmp / method, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dry_run": args.dry_run,
        "dtype": str(dtype).replace("torch.", ""),
        "unet_parameters": unet_params,
        "resolution": pipe.unet.config.sample_size * pipe.vae_scale_factor,
        "steps": args.steps,
        "build_s": build_s,
        "sampling": sampling,
        "methods": rows,
    }


def table(result: dict[str, Any]) -> str:
    gib = 1024**3
    lines = [f"{'phase':<28}{'seconds':>10}{'peak GPU GiB':>14}"]
    s = result["sampling"]
    lines.append(f"{'sampling (reference)':<28}{s['seconds']:>10.2f}{s['peak_gpu_bytes'] / gib:>14.2f}")
    for method, row in result["methods"].items():
        memory = row["memory"] or {}
        stage_mem = memory.get("stage_cuda_peak_allocated_bytes") or {}
        for stage in ("saliency", "distill"):
            if stage in row["timings_s"]:
                label = f"{method} {stage}" + (f" ({result['steps']} steps)" if stage == "distill" else "")
                lines.append(f"{label:<28}{row['timings_s'][stage]:>10.2f}{stage_mem.get(stage, 0) / gib:>14.2f}")
        lines.append(f"{method + ' total':<28}{row['timings_s']['total']:>10.2f}"
                     f"{(memory.get('cuda_peak_allocated_bytes') or 0) / gib:>14.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="SPARE and ESD training steps (N).")
    parser.add_argument("--sample-steps", type=int, default=20, help="DDIM steps for samples and ESD's x_t.")
    parser.add_argument("--batch-size", type=int, default=1, help="Noisy latents per loss term.")
    parser.add_argument("--prompts", type=int, default=4, help="Forget and retain prompts (each).")
    parser.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="Tiny shapes on CPU (checks the script, no numbers).")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/erasure_gpu.json).")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to check the script on CPU", file=sys.stderr)
        return 2
    result = run(args)
    out = args.out or (RESULTS / ("erasure_gpu_dryrun.json" if args.dry_run else "erasure_gpu.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
