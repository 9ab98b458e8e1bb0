"""The shape of the canvas-grid metrics (torch-free: the engine's report and the API type them with it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Kind = Literal["object", "style"]


class Adherence(BaseModel):
    """Share of generated images classified as the prompted object / style (fractions in 0..1)."""

    object_accuracy: float
    style_accuracy: float
    both_accuracy: float
    per_object: dict[str, float]
    per_style: dict[str, float]
    per_prompt: dict[str, float]  # "object/style" -> both-correct rate
    images: int
    seconds: float

    def meets_bar(self, mean: float = 0.90, floor: float = 0.75) -> bool:
        """The testbed quality bar: mean object and style adherence >= `mean`, no object or style below `floor`."""
        return (
            self.object_accuracy >= mean
            and self.style_accuracy >= mean
            and min(self.per_object.values()) >= floor
            and min(self.per_style.values()) >= floor
        )


class TargetMetrics(BaseModel):
    forget: str
    kind: Kind
    ua: float
    ira: float
    cra: float
    ira_rel: float | None
    cra_rel: float | None
    base_ua: float | None
    # How many grid images stand behind UA (the target's own cells) and IRA/CRA (the rest), and 95 % Wilson
    # intervals: UA's on the erased model's share, the relative ones over the base's accuracy on the same cells.
    images_forget: int | None = None
    images_rest: int | None = None
    ua_interval: tuple[float, float] | None = None
    ira_rel_interval: tuple[float, float] | None = None
    cra_rel_interval: tuple[float, float] | None = None
    attack_success: float | None = None
    attack_detail: dict[str, float] | None = None
    attack_budget: int | None = None  # gradient steps of the soft-prompt search behind attack_success


class Metrics(BaseModel):
    model: Adherence  # the evaluated pipeline's prompt adherence over the whole grid
    base: Adherence | None
    targets: list[TargetMetrics]
    fid_analogue: float
    steps: int
    guidance_scale: float
    seeds: list[int]  # every seed drawn per cell, the settling's further seeds included
    extensions: int = 0  # further draws while a verdict could still turn (GridSettling)
    images: int
    seconds: float
