"""A model's own trained image classifier as the judge (the testbed ships one: an independent, real judge).

A model folder declares it in lethe.json (`"judge": {"classifier": "../classifier"}`): a two-head
(object, style) classifier saved by `core.testbed.classifier.Classifier`. Its verdicts are restricted to the
candidate labels, so it answers the same question as every other judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core.evaluation.judges.base import Judge, JudgeUnavailable
from core.filehash import file_sha256
from core.testbed.classifier import Classifier


class ClassifierJudge(Judge):
    name = "model-classifier"

    def __init__(self, directory: Path) -> None:
        weights = directory / "model.safetensors"
        if not weights.is_file():
            raise JudgeUnavailable("the model's declared classifier has no weights")
        self.classifier = Classifier.load(directory)
        self.version = file_sha256(weights)[:16]

    @torch.no_grad()
    def classify(self, images: np.ndarray, kind: str, labels: Sequence[str]) -> list[str]:
        names = {"object": self.classifier.objects, "style": self.classifier.styles}.get(kind)
        if names is None:
            raise JudgeUnavailable(f"the model's classifier judges objects and styles, not {kind}")
        missing = [label for label in labels if label not in names]
        if missing:
            raise JudgeUnavailable(f"the model's classifier does not know {', '.join(missing)}")
        if len(images) == 0:
            return []
        object_logits, style_logits = self.classifier.logits(images)
        logits = object_logits if kind == "object" else style_logits
        allowed = torch.tensor([names.index(label) for label in labels])
        best = logits[:, allowed].argmax(1)
        return [labels[int(i)] for i in best]
