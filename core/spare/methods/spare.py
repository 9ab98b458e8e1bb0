"""SPARE: saliency-localized sparse LoRA, trained by self-distillation to a surrogate with concept-aware timesteps.

Stages: saliency → timesteps → distill → fuse. Writes adapter/ (diffusers and kohya layouts) and fused/.
"""

from __future__ import annotations

from typing import Any

import torch

from core.spare import adapters as lora
from core.spare.adversary import ForgetAdversary
from core.spare.distill import distill
from core.spare.errors import ErasureInputError
from core.spare.methods.base import MethodOutcome, MethodRun, curve
from core.spare.outputs import adapter_metadata, write_adapters
from core.spare.projection import RetainProjection
from core.spare.report import AdapterInfo
from core.spare.saliency import candidate_modules, compute_saliency, is_text_side
from core.spare.specs import SpareConfig
from core.spare.timesteps import concept_sampler, uniform_sampler


class SpareMethod:
    name = "spare"
    config_type = SpareConfig

    def check(self, pipeline: Any, config: SpareConfig) -> None:
        if not candidate_modules(pipeline.unet, config.saliency_pool):
            raise ErasureInputError(f"the UNet has no module in the saliency pool {config.saliency_pool!r}")

    def train(self, run: MethodRun, config: SpareConfig) -> MethodOutcome:
        pipeline, data, stages, gen, dtype = run.pipeline, run.data, run.stages, run.generator, run.dtype
        unet, noise = pipeline.unet, run.noise
        n_concepts = len(run.spec.concepts)
        stages.begin("saliency")
        sal = compute_saliency(unet, noise, data.forget.latents, data.forget_cond, config,
                               dtype=dtype, generator=gen, tick=stages.tick)

        stages.begin("timesteps")
        if config.timesteps == "concept":
            assert data.forget.concept_index is not None
            sampler = concept_sampler(
                unet, noise, data.forget.latents, data.forget_cond, data.surrogate_cond,
                data.forget.concept_index.to(data.forget.latents.device), n_concepts,
                grid_size=config.timestep_grid, gamma=config.timestep_gamma,
                uniform_mix=config.timestep_uniform_mix, generator=gen, dtype=dtype, tick=stages.tick,
            )
        else:
            sampler = uniform_sampler(n_concepts, int(noise.config.num_train_timesteps))

        stages.begin("distill")
        ranks = lora.rank_pattern(sal.selected, sal.shares, config.rank, config.rank_follows_saliency)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # LoRA A init draws from the global RNG: seed it, leave the caller's
            lora_cfg = lora.attach(unet, sal.selected, config.rank, config.alpha, ranks)
        named_layers = lora.lora_layers(unet)
        layers = list(named_layers.values())
        projection = None
        if config.retain_projection > 0:
            # What must stay, as the text encoder states it: the retain prompts, the surrogate prompts (the
            # surrogate is drawn for itself too) and the empty prompt classifier-free guidance draws with.
            states = torch.cat([data.retain_cond.hidden, data.surrogate_cond.hidden,
                                run.encoder.encode([""]).hidden]).cpu()
            projection = RetainProjection.build(named_layers, states, config.retain_projection)
            projection.apply()
        masks = lora.WeightMasks(unet, sal.masks) if sal.masks else None
        trainable = sum(p.numel() for p in unet.parameters() if p.requires_grad)
        adversary = None
        if config.adversarial_steps:
            adversary = ForgetAdversary(data.forget_cond, config.adversarial_steps, config.adversarial_radius,
                                        config.adversarial_step_size)
        log = distill(
            unet, noise, data, sampler, steps=config.steps, lr=config.lr, weight_decay=config.weight_decay,
            batch_size=config.batch_size,
            w_forget=config.w_forget, w_retain=config.w_retain, generator=gen, dtype=dtype, tuner_layers=layers,
            adversary=adversary, repel=config.forget_repel, retain_timesteps=config.retain_timesteps,
            conflict_projection=config.conflict_projection,
            should_stop=stages.should_stop, tick=lambda s, _loss: stages.tick(s / config.steps),
            after_step=projection.apply if projection is not None else None,
        )
        delivered = sal.selected
        if config.deliver_pool != "trained":
            # Where saliency put no module on the text pathway, the whole adapter is delivered: nothing else erases.
            delivered = [m for m in sal.selected if is_text_side(m)] or sal.selected
        if delivered != sal.selected:
            if masks is not None:
                masks.remove()
            with torch.random.fork_rng(devices=[]):  # re-attaching draws a LoRA init: leave the caller's RNG
                lora_cfg = lora.keep_only(unet, delivered, config.rank, config.alpha, ranks)
            kept_masks = {m: w for m, w in sal.masks.items() if m in delivered}
            masks = lora.WeightMasks(unet, kept_masks) if kept_masks else None
        loss_curve = {"total": curve(log.loss), "forget": curve(log.forget_loss), "retain": curve(log.retain_loss)}
        if log.adversarial_loss:
            loss_curve["adversarial"] = curve(log.adversarial_loss)
        adapter = AdapterInfo(
            target_modules=delivered,
            rank=config.rank,
            alpha=lora_cfg.lora_alpha,
            rank_pattern={m: r for m, r in ranks.items() if m in delivered},
            trainable_parameters=trainable,
            weight_mask=bool(sal.masks),
            portable_adapter_note=(
                "adapter/ holds the unmasked low-rank factors; the per-weight mask is merged only into fused/"
                if sal.masks else "adapter/ + base equals fused/ (to float tolerance)"
            ),
            retain_projection=projection.report() if projection is not None else None,
        )

        stages.begin("fuse")
        concepts = [{"target": c.target, "surrogate": c.surrogate_text(), "kind": c.kind} for c in run.spec.concepts]
        metadata = adapter_metadata(pipeline, run.architecture, concepts, config.method, config.rank,
                                    float(lora_cfg.lora_alpha), run.provenance)
        write_adapters(pipeline, unet, run.out_dir, metadata)
        delta = lora.deltas(unet, sal.masks)  # masks of dropped modules name no layer and go unused
        if masks is not None:
            masks.remove()
        lora.detach(unet)
        modules = dict(unet.named_modules())
        with torch.no_grad():
            for name, d in delta.items():
                weight = modules[name].weight
                run.originals[f"{name}.weight"] = weight.detach().clone()
                weight.add_(d.to(weight.dtype).reshape(weight.shape))
        run.save_fused()
        return MethodOutcome(loss_curve=loss_curve, timesteps=sampler.report(log.timesteps),
                             saliency=sal.report(), adapter=adapter)
