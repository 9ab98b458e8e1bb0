"""Judges: who decides what a generated image shows. The worker picks the best one a model allows.

- `model-classifier`: a classifier the model folder ships (declared in lethe.json) — trained on real
  renders, independent of the diffusion model; the testbed has one.
- `clip`: a CLIP folder the operator installs (`LETHE_CLIP_JUDGE_PATH`).
- `diffusion-classifier`: the base model itself as a zero-shot classifier; runs on any SD 1.x/2.x/XL.

`auto` takes them in that order. Naming one that cannot run is an error (JudgeUnavailable), never a fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from core.evaluation.judges.base import Judge, JudgeUnavailable
from core.evaluation.vocabulary import Vocabulary

JudgeName = Literal["auto", "model-classifier", "clip", "diffusion-classifier"]
JUDGE_NAMES: tuple[str, ...] = ("auto", "model-classifier", "clip", "diffusion-classifier")

__all__ = ["JUDGE_NAMES", "Judge", "JudgeName", "JudgeUnavailable", "select_judge"]


def _model_classifier(vocabulary: Vocabulary) -> Judge:
    from core.evaluation.judges.classifier import ClassifierJudge

    declared = vocabulary.judge.get("classifier")
    if not declared:
        raise JudgeUnavailable("the model folder declares no classifier (lethe.json judge.classifier)")
    base = Path(vocabulary.judge.get("_dir", ".")).resolve()
    directory = (base / str(declared)).resolve()
    # The folder holding lethe.json or its parent (a testbed keeps pipeline/ and classifier/ side by side).
    if not directory.is_relative_to(base.parent):
        raise JudgeUnavailable("the declared classifier lies outside the model folder")
    return ClassifierJudge(directory)


def select_judge(choice: str, *, base_pipeline: Any, vocabulary: Vocabulary, clip_path: Path | None = None,
                 fingerprint: str | None = None) -> Judge:
    """The judge named by `choice`, or for `auto` the first of classifier → CLIP → diffusion that can run."""
    if choice not in JUDGE_NAMES:
        raise JudgeUnavailable(f"unknown judge {choice!r}; choose from {', '.join(JUDGE_NAMES)}")
    if choice in ("auto", "model-classifier") and (vocabulary.judge.get("classifier") or choice != "auto"):
        return _model_classifier(vocabulary)
    if choice == "clip" or (choice == "auto" and clip_path is not None):
        if clip_path is None:
            raise JudgeUnavailable("no CLIP judge is installed (LETHE_CLIP_JUDGE_PATH is not set)")
        from core.evaluation.judges.clip import ClipJudge

        return ClipJudge(Path(clip_path), vocabulary)
    from core.evaluation.judges.diffusion import DiffusionClassifierJudge

    return DiffusionClassifierJudge(base_pipeline, vocabulary, fingerprint=fingerprint)
