"""The tiny text-to-image pipeline, built from configs (nothing comes from a model hub).

A real diffusers `StableDiffusionPipeline`: `AutoencoderKL` (f=4: 32 px images ↔ 4×8×8 latents), a tiny
`CLIPTextModel` with a locally built `CLIPTokenizer`, and a `UNet2DConditionModel` with cross-attention.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from core.testbed.canvas import RESOLUTION, vocabulary

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_PUNCT = (",", ".", ":", "-", "!", "?", "'")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the tiny pipeline. Stored in the manifest."""

    resolution: int = RESOLUTION
    vae_channels: tuple[int, ...] = (32, 64, 64)  # len-1 downsamplings: 3 blocks → f=4
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (64, 128, 128)
    unet_layers_per_block: int = 1
    unet_heads: int = 4
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 2
    max_tokens: int = 16
    # BPE merges the tokenizer keeps (None = all: every canvas word is one token). Fewer merges leave some
    # concept and template words split into sub-word pieces, as a real tokenizer does with rare words.
    tokenizer_merges: int | None = None
    num_train_timesteps: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_tokenizer(max_tokens: int = 16, merges_kept: int | None = None) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose vocabulary holds every canvas word as one token (plus letters as fallback).

    Merges spell each word out letter by letter; a word unknown to the vocabulary falls back to letters.
    `merges_kept` keeps only the first (most frequent) merges: a smaller vocabulary in which longer words
    stay split into sub-word pieces.
    """
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(_PUNCT)
    vocab: dict[str, int] = {}
    for tok in (*letters, *(f"{c}</w>" for c in letters)):
        vocab.setdefault(tok, len(vocab))
    merges = _learn_merges(vocabulary())
    if merges_kept is not None:
        merges = merges[:merges_kept]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    vocab.setdefault(BOS, len(vocab))
    vocab.setdefault(EOS, len(vocab))
    tok = CLIPTokenizer(vocab=vocab, merges=merges, unk_token=EOS, bos_token=BOS, eos_token=EOS, pad_token=EOS)
    tok.model_max_length = max_tokens
    return tok


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Train BPE on the word list until every word is one symbol; encoding then reproduces whole words
    (hand-written prefix merges collide across words, e.g. "in</w>" splitting "striped")."""
    seqs = [[*w[:-1], f"{w[-1]}</w>"] for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for seq in seqs:
            for pair in itertools.pairwise(seq):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        for k, seq in enumerate(seqs):
            out: list[str] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[k] = out


def build_text_encoder(tokenizer: CLIPTokenizer, cfg: ModelConfig) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=cfg.text_width,
        intermediate_size=cfg.text_width * 2,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_tokens,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=cfg.text_width,
    )
    return CLIPTextModel(config)


def build_vae(cfg: ModelConfig) -> AutoencoderKL:
    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=16,
        sample_size=cfg.resolution,
        mid_block_add_attention=False,
    )


def build_unet(cfg: ModelConfig) -> UNet2DConditionModel:
    n = len(cfg.unet_channels)
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    vae_factor = 2 ** (len(cfg.vae_channels) - 1)
    return UNet2DConditionModel(
        sample_size=cfg.resolution // vae_factor,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers_per_block,
        cross_attention_dim=cfg.text_width,
        attention_head_dim=cfg.unet_heads,
        norm_num_groups=16,
    )


def train_scheduler(cfg: ModelConfig) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
    )


def sample_scheduler(cfg: ModelConfig) -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def assemble_pipeline(
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    unet: UNet2DConditionModel,
    cfg: ModelConfig,
) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sample_scheduler(cfg),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
