"""Noise-space metrics: they need no classifier, so they work on any diffusers SD model a user brings.

Both compare a student (erased) UNet with its teacher (the original) on the SAME noisy latents and timesteps:

- forget gap closure = E‖ε_S(x_t, c_forget) − ε_T(x_t, c_surrogate)‖ / E‖ε_T(x_t, c_forget) − ε_T(x_t, c_surrogate)‖
  1.0 before erasure (student = teacher); 0.0 when the forget prompt now predicts exactly what the teacher
  predicts for the surrogate. Lower is better.
- retain drift = E‖ε_S(x_t, c_retain) − ε_T(x_t, c_retain)‖ / E‖ε_T(x_t, c_retain)‖
  0.0 when retain prompts are untouched. Lower is better.

The teacher may be a separate UNet, or the student itself with its LoRA adapters disabled (`teacher_unet=None`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel

TextLike = str | Sequence[str] | torch.Tensor


@dataclass(frozen=True)
class NoiseMetrics:
    forget_gap_closure: float
    retain_drift: float
    samples: int


def encode_text(text_encoder: torch.nn.Module, tokenizer: object, prompts: Sequence[str]) -> torch.Tensor:
    """Prompt embeddings exactly as StableDiffusionPipeline builds them (padded to max length, last hidden state)."""
    tok = tokenizer(  # type: ignore[operator]
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,  # type: ignore[attr-defined]
        truncation=True,
        return_tensors="pt",
    )
    device = next(text_encoder.parameters()).device
    with torch.no_grad():
        return text_encoder(tok.input_ids.to(device))[0]


def _embeds(text: TextLike, text_encoder: torch.nn.Module | None, tokenizer: object | None) -> torch.Tensor:
    if isinstance(text, torch.Tensor):
        return text if text.dim() == 3 else text.unsqueeze(0)
    prompts = [text] if isinstance(text, str) else list(text)
    if text_encoder is None or tokenizer is None:
        raise ValueError("prompts given as text need text_encoder and tokenizer (or pass embeddings)")
    return encode_text(text_encoder, tokenizer, prompts)


@contextlib.contextmanager
def _adapters_disabled(unet: UNet2DConditionModel) -> Iterator[None]:
    if not getattr(unet, "_hf_peft_config_loaded", False):
        raise ValueError("teacher_unet=None needs a student UNet with LoRA adapters to disable")
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()


class _Probe:
    """Shared noisy latents and timesteps, and the student/teacher forward passes over them."""

    def __init__(
        self,
        student: UNet2DConditionModel,
        teacher: UNet2DConditionModel | None,
        samples: int,
        seed: int,
        x0: torch.Tensor | None,
        num_train_timesteps: int,
        alphas_cumprod: torch.Tensor | None,
    ) -> None:
        self.student, self.teacher = student, teacher
        gen = torch.Generator().manual_seed(seed)
        cfg = student.config
        shape = (samples, cfg.in_channels, cfg.sample_size, cfg.sample_size)
        noise = torch.randn(shape, generator=gen)
        self.t = torch.randint(0, num_train_timesteps, (samples,), generator=gen)
        if x0 is None:
            # No data: pure-noise states (what every trajectory starts from).
            self.x_t = noise
        else:
            if alphas_cumprod is None:
                raise ValueError("x0 needs the scheduler's alphas_cumprod")
            reps = -(-samples // len(x0))
            x0 = x0.detach().float().cpu().repeat(reps, 1, 1, 1)[:samples]
            a = alphas_cumprod[self.t].float().view(-1, 1, 1, 1)
            self.x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        self.device = next(student.parameters()).device
        self.dtype = next(student.parameters()).dtype

    @torch.no_grad()
    def eps(self, which: str, emb: torch.Tensor) -> torch.Tensor:
        emb = emb.to(self.device, self.dtype)
        if emb.shape[0] == 1:
            emb = emb.expand(len(self.x_t), -1, -1)
        elif emb.shape[0] != len(self.x_t):
            emb = emb.repeat(-(-len(self.x_t) // emb.shape[0]), 1, 1)[: len(self.x_t)]
        x, t = self.x_t.to(self.device, self.dtype), self.t.to(self.device)
        if which == "student":
            return self.student(x, t, encoder_hidden_states=emb).sample.float()
        if self.teacher is not None:
            return self.teacher(x, t, encoder_hidden_states=emb).sample.float()
        with _adapters_disabled(self.student):
            return self.student(x, t, encoder_hidden_states=emb).sample.float()


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def forget_gap_closure(
    student_unet: UNet2DConditionModel,
    teacher_unet: UNet2DConditionModel | None,
    forget: TextLike,
    surrogate: TextLike,
    text_encoder: torch.nn.Module | None = None,
    tokenizer: object | None = None,
    samples: int = 32,
    seed: int = 0,
    x0: torch.Tensor | None = None,
    num_train_timesteps: int = 1000,
    alphas_cumprod: torch.Tensor | None = None,
) -> float:
    """E‖ε_S(x_t,c_f) − ε_T(x_t,c_s)‖ / E‖ε_T(x_t,c_f) − ε_T(x_t,c_s)‖ over shared noise and timesteps.

    forget/surrogate: a prompt, aligned lists of prompts, or embeddings (N×T×D). `x0` (clean latents) puts
    x_t on the data's noising path; without it the probe uses pure-noise states.
    """
    probe = _Probe(student_unet, teacher_unet, samples, seed, x0, num_train_timesteps, alphas_cumprod)
    c_f, c_s = _embeds(forget, text_encoder, tokenizer), _embeds(surrogate, text_encoder, tokenizer)
    teacher_s = probe.eps("teacher", c_s)
    num = _norm(probe.eps("student", c_f) - teacher_s).mean()
    den = _norm(probe.eps("teacher", c_f) - teacher_s).mean()
    return float(num / den.clamp_min(1e-12))


def retain_drift(
    student_unet: UNet2DConditionModel,
    teacher_unet: UNet2DConditionModel | None,
    retain: TextLike,
    text_encoder: torch.nn.Module | None = None,
    tokenizer: object | None = None,
    samples: int = 32,
    seed: int = 0,
    x0: torch.Tensor | None = None,
    num_train_timesteps: int = 1000,
    alphas_cumprod: torch.Tensor | None = None,
) -> float:
    """E‖ε_S(x_t,c_r) − ε_T(x_t,c_r)‖ / E‖ε_T(x_t,c_r)‖ over shared noise and timesteps."""
    probe = _Probe(student_unet, teacher_unet, samples, seed, x0, num_train_timesteps, alphas_cumprod)
    c_r = _embeds(retain, text_encoder, tokenizer)
    teacher = probe.eps("teacher", c_r)
    num = _norm(probe.eps("student", c_r) - teacher).mean()
    return float(num / _norm(teacher).mean().clamp_min(1e-12))


def pipeline_noise_metrics(
    base: StableDiffusionPipeline,
    erased: StableDiffusionPipeline | None,
    forget_prompts: Sequence[str],
    surrogate_prompts: Sequence[str],
    retain_prompts: Sequence[str],
    samples: int = 32,
    seed: int = 0,
    x0_steps: int = 10,
    guidance_scale: float = 5.0,
) -> NoiseMetrics:
    """Both metrics for two pipelines (or one pipeline with LoRA adapters: pass erased=None and `base` holding them).

    Prompts are encoded with each pipeline's own text encoder (an erasure may have changed it). Forget pairs are
    aligned lists; every prompt gets `samples` noise states, and the ratios pool all prompts. With x0_steps > 0
    the clean latents x0 are the base model's own generations for the prompt (x0_steps DDIM steps), so x_t lies
    on the teacher's path; x0_steps=0 uses pure-noise states (cheaper on big models).
    """
    if len(forget_prompts) != len(surrogate_prompts):
        raise ValueError("forget_prompts and surrogate_prompts must be aligned lists")
    student_pipe = erased if erased is not None else base
    teacher_unet = base.unet if erased is not None else None
    alphas = base.scheduler.alphas_cumprod
    n_train = base.scheduler.config.num_train_timesteps

    def enc(pipe: StableDiffusionPipeline, prompts: Sequence[str]) -> torch.Tensor:
        return encode_text(pipe.text_encoder, pipe.tokenizer, prompts)

    def teacher_x0(prompt: str, k: int) -> torch.Tensor | None:
        if x0_steps <= 0:
            return None
        gens = [torch.Generator().manual_seed(seed + 7919 * k + i) for i in range(min(samples, 8))]
        ctx = _adapters_disabled(base.unet) if erased is None else contextlib.nullcontext()
        with ctx, torch.no_grad():
            out = base(
                [prompt] * len(gens),
                num_inference_steps=x0_steps,
                guidance_scale=guidance_scale,
                generator=gens,
                output_type="latent",
            )
        return out.images.float().cpu()

    f_num = f_den = r_num = r_den = 0.0
    for k, (f, s) in enumerate(zip(forget_prompts, surrogate_prompts, strict=True)):
        probe = _Probe(student_pipe.unet, teacher_unet, samples, seed + k, teacher_x0(f, k), n_train, alphas)
        t_s = probe.eps("teacher", enc(base, [s]))
        f_num += float(_norm(probe.eps("student", enc(student_pipe, [f])) - t_s).sum())
        f_den += float(_norm(probe.eps("teacher", enc(base, [f])) - t_s).sum())
    for k, r in enumerate(retain_prompts):
        x0 = teacher_x0(r, 10_000 + k)
        probe = _Probe(student_pipe.unet, teacher_unet, samples, seed + 10_000 + k, x0, n_train, alphas)
        t_r = probe.eps("teacher", enc(base, [r]))
        r_num += float(_norm(probe.eps("student", enc(student_pipe, [r])) - t_r).sum())
        r_den += float(_norm(t_r).sum())
    return NoiseMetrics(
        forget_gap_closure=f_num / max(f_den, 1e-12) if forget_prompts else float("nan"),
        retain_drift=r_num / max(r_den, 1e-12) if retain_prompts else float("nan"),
        samples=samples * (len(forget_prompts) + len(retain_prompts)),
    )
