"""Typed engine reports and judge evidence for tests that script the engine (no model runs)."""

from __future__ import annotations

from typing import Any

from core.evaluation.evidence_schema import JudgeEvidence
from core.spare.report import EngineMetrics, ErasureReport


def evidence(ua: float = 1.0, retention: float | None = 1.0, images: int = 12, *, concept: str = "circle",
             judge: str = "diffusion-classifier", seconds: float = 1.0, lost_as: str = "circle") -> JudgeEvidence:
    """A judge's held-out evidence for one concept and one retention group (`lost_as`: what the retained
    images the erasure lost were judged as instead)."""
    erased = round(images * (1 - ua))
    lost = [{"concept": "square", "prompt": "q", "seed": i, "erased_label": lost_as}
            for i in range(round(24 * (1 - retention)) if retention is not None else 0)]
    return JudgeEvidence.model_validate({
        "judge": {"name": judge, "version": "x"}, "heldout": True, "excluded_training_prompts": 0,
        "concepts": [{"concept": concept, "kind": "object", "surrogate": None, "prompts": ["p"], "seeds": [0],
                      "images": images, "labels": [concept, "other"], "recognized_base": images,
                      "recognized_erased": erased, "ua": ua, "ua_interval": [0.7, 1.0], "base_ua": 0.0}],
        "retention": [{"group": "same-kind", "kind": "object", "concepts": ["square"], "prompts": ["q"],
                       "seeds": [0], "images": 24, "correct_base": 24, "correct_erased": 24, "accuracy_base": 1.0,
                       "accuracy_erased": 1.0, "accuracy_interval": [0.8, 1.0], "retention": retention,
                       "retention_interval": [0.8, 1.0] if retention is not None else None, "lost": lost}],
        "steps": 4, "guidance_scale": 5.0, "images": images + 24, "seconds": seconds, "judge_seconds": seconds / 2,
        "vocabulary": "built-in",
    })


def report(config: Any, metrics: dict[str, Any] | EngineMetrics) -> ErasureReport:
    """The report a scripted single-round engine returns: the config as run and the evaluator's metrics."""
    return ErasureReport.model_validate({
        "method": config.method, "architecture": "sd1", "inputs": {}, "config": config.model_dump(mode="json"),
        "device": "cpu", "dtype": "float32", "seeds": {"run": config.seed, "grid": [config.seed]},
        "versions": {}, "prompts": {"forget": {}, "surrogates": {}, "retain": [], "forget_samples": 0,
                                    "retain_samples": 0, "example_images": 0, "forget_anchor": "both",
                                    "anchor_samples": 0},
        "loss_curve": {"total": [1.0]}, "metrics": metrics, "grid": {"prompts": [], "kinds": [], "seeds": []},
        "sizes": {"unet_bytes": 1, "adapter_bytes": None, "adapter_fraction_of_unet": None, "fused_bytes": 1},
    })
