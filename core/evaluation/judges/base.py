"""The judge interface: label generated images with one concept of a kind, from a list of candidates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class JudgeUnavailable(RuntimeError):
    """The judge cannot run for this model or these labels (missing files, unknown concepts)."""


class Judge(ABC):
    """Labels images (N×H×W×3 uint8). `name` and `version` go into every certificate that relies on it."""

    name: str = "judge"
    version: str = "1"

    @abstractmethod
    def classify(self, images: np.ndarray, kind: str, labels: Sequence[str]) -> list[str]:
        """For each image, the label in `labels` (concepts of `kind`) that the judge sees in it."""

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}
