"""Metrics as a worker records them for a verified erasure: a judge's held-out evidence and the checks that the
verification rule (core.erasure.verification) computed from it. For tests that complete jobs by hand."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from core.erasure.verification import Thresholds, verify
from core.evaluation.evidence import wilson
from core.evaluation.evidence_schema import ConceptEvidence, JudgeEvidence, RetentionEvidence
from core.spare.report import EngineMetrics

THRESHOLDS = Thresholds(min_unlearning_accuracy=0.9, min_retention=0.9, min_gap_closure=0.5, max_retain_drift=0.5)


def judge_evidence(concept: str = "circle", recognized: int = 0, images: int = 12) -> dict[str, Any]:
    prompts = [f"a picture of a {concept} on a table"] * images
    evidence = JudgeEvidence(
        judge={"name": "model-classifier", "version": "test"}, excluded_training_prompts=0,
        concepts=[ConceptEvidence(
            concept=concept, kind="object", surrogate="square", prompts=prompts, seeds=list(range(images)),
            images=images, labels=[concept, "square"], recognized_base=images, recognized_erased=recognized,
            ua=1 - recognized / images, ua_interval=wilson(images - recognized, images), base_ua=0.0,
        )],
        retention=[RetentionEvidence(
            group="same-kind", kind="object", concepts=["square"], prompts=["a square"] * 12, seeds=list(range(12)),
            images=12, correct_base=12, correct_erased=12, accuracy_base=1.0, accuracy_erased=1.0,
            accuracy_interval=wilson(12, 12), retention=1.0, retention_interval=(0.76, 1.0),
        )],
        steps=10, guidance_scale=5.0, images=48, seconds=1.0, judge_seconds=0.5, vocabulary="default",
    )
    return evidence.model_dump(mode="json")


def verified_metrics(concept: str = "circle", recognized: int = 0) -> dict[str, Any]:
    """Metrics with judge evidence and the verdict's checks (all passed unless `recognized` is high)."""
    probe = {"forget_gap_closure": 0.9, "retain_drift_relative": 0.01, "base_forget_gap": 1.0, "forget_gap": 0.1,
             "retain_drift": 0.01}
    metrics: dict[str, Any] = {"probe": probe, "judge": judge_evidence(concept, recognized)}
    verdict = verify(EngineMetrics.model_validate(metrics), THRESHOLDS, [concept])
    return {**metrics, "verification": verdict.checks, "thresholds": asdict(THRESHOLDS)}
