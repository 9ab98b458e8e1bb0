"""Tiny random-weight SD1 / SD2 / SDXL pipelines built from configs, for tests that need a real pipeline fast.

The shapes follow each family's layout differences (SD2: v-prediction, linear projections, wider text states;
SDXL: two text encoders, pooled text embeddings and time-id added conditioning) at a size that runs in
milliseconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

_WORDS = [
    "circle", "square", "triangle", "star", "dog", "cat", "photo", "image", "style", "striped", "dotted",
    "a", "an", "of", "in", "the", "painting", "object", "plain", "picture", "with", "and",
]


def tiny_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with a small vocabulary: every byte, its end-of-word form, a few words."""
    chars = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in chars + [c + "</w>" for c in chars] + [w + "</w>" for w in _WORDS]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        # Merge letter by letter so every listed word becomes one token; intermediate pieces join the vocab.
        piece = word[0]
        for i, ch in enumerate(word[1:], start=1):
            right = ch + "</w>" if i == len(word) - 1 else ch
            merged = piece + right
            if (piece, right) not in merges:
                merges.append((piece, right))
            vocab.setdefault(merged, len(vocab))
            piece = merged
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)


def _text_config(tok: CLIPTokenizer, hidden: int, projection: int | None = None) -> CLIPTextConfig:
    kwargs: dict[str, Any] = dict(
        vocab_size=len(tok.get_vocab()),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=tok.model_max_length,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    if projection is not None:
        kwargs["projection_dim"] = projection
    return CLIPTextConfig(**kwargs)


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, sample_size=32,
    )


def _scheduler(prediction_type: str = "epsilon") -> DDIMScheduler:
    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
    )


def tiny_sd1(seed: int = 0) -> StableDiffusionPipeline:
    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    )
    te = CLIPTextModel(_text_config(tok, 32))
    return StableDiffusionPipeline(
        vae=_vae(), text_encoder=te, tokenizer=tok, unet=unet, scheduler=_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def tiny_sd2(seed: int = 0) -> StableDiffusionPipeline:
    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=48, attention_head_dim=(4, 8), use_linear_projection=True,
    )
    te = CLIPTextModel(_text_config(tok, 48))
    return StableDiffusionPipeline(
        vae=_vae(), text_encoder=te, tokenizer=tok, unet=unet, scheduler=_scheduler("v_prediction"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def tiny_sdxl(seed: int = 0) -> StableDiffusionXLPipeline:
    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    te1 = CLIPTextModel(_text_config(tok, 32))
    te2 = CLIPTextModelWithProjection(_text_config(tok, 32, projection=32))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=8 * 6 + 32, transformer_layers_per_block=(1, 2),
    )
    return StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=te1, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tiny_tokenizer(),
        unet=unet, scheduler=_scheduler(), force_zeros_for_empty_prompt=True,
    )


BUILDERS = {"sd1": tiny_sd1, "sd2": tiny_sd2, "sdxl": tiny_sdxl}


def save_tiny(arch: str, out: Path, seed: int = 0) -> Path:
    """Write a tiny pipeline of the given family to `out` as a diffusers folder."""
    pipe = BUILDERS[arch](seed)
    pipe.save_pretrained(out)
    return out
