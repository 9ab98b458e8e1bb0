"""The engine's samples stage: forget, retain and anchor latents with their conditionings, and the grid's prompts.

Every method trains on the same samples (core.spare.distill.DistillData), so they are drawn once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.spare.base_outputs import BaseOutputs
from core.spare.conditioning import PromptEncoder
from core.spare.distill import DistillData
from core.spare.prompting import tokens_of
from core.spare.report import PromptsUsed
from core.spare.samples import (
    SampleSet,
    encode_images,
    forget_prompts,
    generate_latents,
    surrogate_prompt,
    training_retain,
)
from core.spare.specs import ErasureSpec, EsdConfig, SpareConfig
from core.spare.stages import StageClock


@dataclass
class TrainingData:
    data: DistillData
    prompts: PromptsUsed
    grid_prompts: list[str]  # before/after grid rows: a few forget prompts per concept, then retain ones
    grid_kinds: list[str]


def prepare(pipeline: Any, spec: ErasureSpec, config: SpareConfig | EsdConfig, clock: StageClock,
            encoder: PromptEncoder, device: torch.device, base: BaseOutputs | None = None) -> TrainingData:
    """The samples every method trains on. `base`: what earlier rounds of the job drew from the same weights."""
    memo = base.latents if base is not None else None
    tokens = tokens_of(getattr(pipeline, "tokenizer", None), spec)
    per_concept_prompts = {c.target: forget_prompts(c, spec.retain, config.max_forget_prompts, tokens)
                           for c in spec.concepts}
    retain = training_retain(spec, config, per_concept_prompts, tokens)
    f_prompts, f_surr, f_concept, image_latents = [], [], [], []
    for ci, concept in enumerate(spec.concepts):
        prompts = per_concept_prompts[concept.target]
        if concept.example_images:
            # Each example image trains the concept's prompts in turn.
            image_latents.append(encode_images(pipeline, list(concept.example_images), device))
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
        clock.tick(done[0] / max(1, total_jobs) * 0.8)
        clock.check_stop()

    gen_lat = (
        generate_latents(pipeline, unique_gen, seed=config.seed, steps=config.sample_steps,
                         guidance=config.guidance_scale, per_prompt=config.samples_per_prompt, tick=tick,
                         memo=memo)
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
    forget = SampleSet(torch.stack(forget_latents).to(device), f_prompts, f_surr, torch.tensor(f_concept))
    retain_lat = generate_latents(pipeline, retain, seed=config.seed + 500_000, steps=config.sample_steps,
                                  guidance=config.guidance_scale, per_prompt=config.samples_per_prompt, tick=tick,
                                  memo=memo)
    retain_set = SampleSet(retain_lat.to(device), [p for p in retain for _ in range(config.samples_per_prompt)])
    data = DistillData(
        forget, encoder.encode(forget.prompts), encoder.encode(forget.surrogates),
        retain_set, encoder.encode(retain_set.prompts),
        retain_on_forget=getattr(config, "retain_on_forget", 0.0),
    )
    if anchor != "concept":
        # One teacher generation per distinct surrogate prompt: where the erased model should end up.
        unique_surr = list(dict.fromkeys(f_surr))
        surr_lat = generate_latents(pipeline, unique_surr, seed=config.seed + 250_000, steps=config.sample_steps,
                                    guidance=config.guidance_scale, per_prompt=1, tick=tick, memo=memo)
        data.anchors = surr_lat[[unique_surr.index(s) for s in f_surr]].to(device)
        data.anchor_share = 1.0 if anchor == "surrogate" else 0.5
    grid_prompts, grid_kinds = [], []
    for concept in spec.concepts[:4]:
        for p in per_concept_prompts[concept.target][: 2 if len(spec.concepts) > 1 else 3]:
            grid_prompts.append(p)
            grid_kinds.append("forget")
    for r in [*[r for r in retain if r][:3], ""]:
        grid_prompts.append(r)
        grid_kinds.append("retain")
    prompts = PromptsUsed(
        forget=per_concept_prompts,
        surrogates={c.target: c.surrogate_text() for c in spec.concepts},
        retain=retain,
        forget_samples=len(f_prompts),
        retain_samples=len(retain_set.prompts),
        example_images=sum(len(c.example_images) for c in spec.concepts),
        forget_anchor=anchor,
        anchor_samples=n_anchor,
    )
    return TrainingData(data, prompts, grid_prompts, grid_kinds)
