"""Prompt adherence of a pipeline over the whole OBJECTS × STYLES grid, judged by the classifier."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from core.evaluation.metrics_schema import Adherence
from core.evaluation.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, generate
from core.testbed.canvas import OBJECTS, STYLES, prompt
from core.testbed.classifier import Classifier


def grid_prompts(seeds: Sequence[int], template_index: int = 0) -> tuple[list[str], list[int], list[int], list[int]]:
    """Prompts, seeds, object indices and style indices for every (object, style, seed) of the grid."""
    prompts, all_seeds, objs, styles = [], [], [], []
    for oi, o in enumerate(OBJECTS):
        for si, s in enumerate(STYLES):
            for seed in seeds:
                prompts.append(prompt(o, s, template_index))
                all_seeds.append(int(seed))
                objs.append(oi)
                styles.append(si)
    return prompts, all_seeds, objs, styles


def adherence_from_predictions(
    pred_obj: np.ndarray, pred_style: np.ndarray, objs: np.ndarray, styles: np.ndarray, seconds: float = 0.0
) -> Adherence:
    ok_o = pred_obj == objs
    ok_s = pred_style == styles
    both = ok_o & ok_s
    per_prompt = {
        f"{o}/{s}": float(both[(objs == oi) & (styles == si)].mean())
        for oi, o in enumerate(OBJECTS)
        for si, s in enumerate(STYLES)
        if ((objs == oi) & (styles == si)).any()
    }
    return Adherence(
        object_accuracy=float(ok_o.mean()),
        style_accuracy=float(ok_s.mean()),
        both_accuracy=float(both.mean()),
        per_object={o: float(ok_o[objs == i].mean()) for i, o in enumerate(OBJECTS) if (objs == i).any()},
        per_style={s: float(ok_s[styles == i].mean()) for i, s in enumerate(STYLES) if (styles == i).any()},
        per_prompt=per_prompt,
        images=len(objs),
        seconds=seconds,
    )


def prompt_adherence(
    pipeline: StableDiffusionPipeline,
    classifier: Classifier,
    seeds: Sequence[int] = tuple(range(8)),
    steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    progress: Callable[[int, int], None] | None = None,
) -> Adherence:
    """Generate every object × style prompt over `seeds` and judge each image with the classifier."""
    t0 = time.perf_counter()
    prompts, all_seeds, objs, styles = grid_prompts(seeds)
    images = generate(pipeline, prompts, all_seeds, steps=steps, guidance_scale=guidance_scale, progress=progress)
    po, ps = classifier.predict(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0)
    return adherence_from_predictions(
        po.numpy(), ps.numpy(), np.array(objs), np.array(styles), seconds=time.perf_counter() - t0
    )
