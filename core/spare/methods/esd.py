"""ESD-x / ESD-u baseline (Gandikota et al. 2023): full fine-tuning with negative guidance (core.spare.esd).

Stages: distill → fuse. No adapter: the trained weights are the output, in fused/.
"""

from __future__ import annotations

from typing import Any

import torch

from core.spare.esd import esd_parameters, esd_train
from core.spare.methods.base import MAX_CURVE_POINTS, MethodOutcome, MethodRun, curve
from core.spare.report import EsdInfo
from core.spare.specs import EsdConfig


class EsdMethod:
    name = "esd"
    config_type = EsdConfig

    def check(self, pipeline: Any, config: EsdConfig) -> None:
        return None  # every UNet has cross-attention weights (ESD-x) and others (ESD-u)

    def train(self, run: MethodRun, config: EsdConfig) -> MethodOutcome:
        pipeline, stages, dtype, originals = run.pipeline, run.stages, run.dtype, run.originals
        unet = pipeline.unet
        params = esd_parameters(unet, config.train)
        unet.requires_grad_(False)
        for name, p in params.items():
            originals[name] = p.detach().clone()
            if p.dtype != torch.float32:
                p.data = p.data.float()  # bf16 updates vanish (field notes); trained tensors are float32
            p.requires_grad_(True)
        stages.begin("distill")
        # ESD trains on the concept prompts themselves (the forget prompts of every concept).
        concept_prompts = list(dict.fromkeys(run.data.forget.prompts))
        log = esd_train(
            pipeline, params, originals, run.encoder.encode(concept_prompts), run.encoder.encode([""]),
            steps=config.steps, lr=config.lr, eta=config.negative_guidance, batch_size=config.batch_size,
            ddim_steps=config.sample_steps, start_guidance=config.start_guidance, generator=run.generator,
            dtype=dtype, should_stop=stages.should_stop, tick=lambda s, _loss: stages.tick(s / config.steps),
        )
        stages.begin("fuse")
        unet.requires_grad_(False)
        if dtype is not None:
            for name, p in params.items():
                p.data = p.data.to(originals[name].dtype)
        run.save_fused()
        return MethodOutcome(
            loss_curve={"total": curve(log.loss)},
            timesteps={"mode": "esd-ddim", "sampled": log.timesteps[:MAX_CURVE_POINTS]},
            esd=EsdInfo(trained_parameters=sum(p.numel() for p in params.values()), train=config.train),
        )
