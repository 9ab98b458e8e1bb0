"""The shape of a judge's held-out evidence (torch-free: the API types erasure metrics with it)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ConceptEvidence(BaseModel):
    concept: str
    kind: str
    surrogate: str | None
    prompts: list[str]
    seeds: list[int]
    images: int
    labels: list[str]  # the candidates the judge chose from
    recognized_base: int  # base images labelled as the concept
    recognized_erased: int  # erased-model images labelled as the concept
    ua: float
    ua_interval: tuple[float, float]
    base_ua: float


class LostImage(BaseModel):
    """A held-out image the base model drew as its concept and the erased model no longer does."""

    concept: str  # what the prompt asked for (and the base model's image showed)
    prompt: str
    seed: int
    erased_label: str  # what the judge saw in the erased model's image instead


class RetentionEvidence(BaseModel):
    group: str  # "same-kind" (IRA-like) or "other-kind" (CRA-like)
    kind: str
    concepts: list[str]
    prompts: list[str]
    seeds: list[int]
    images: int
    correct_base: int
    correct_erased: int
    accuracy_base: float
    accuracy_erased: float
    accuracy_interval: tuple[float, float]
    retention: float | None  # accuracy_erased / accuracy_base; None when the base itself scores 0
    retention_interval: tuple[float, float] | None
    lost: list[LostImage] = []  # which concepts the erasure hurt, and what they became


class JudgeEvidence(BaseModel):
    judge: dict[str, str]
    heldout: bool = True
    excluded_training_prompts: int
    concepts: list[ConceptEvidence]
    retention: list[RetentionEvidence]
    steps: int
    guidance_scale: float
    images: int
    seconds: float  # drawing the held-out images and judging them
    judge_seconds: float  # the judge's labelling alone
    vocabulary: str
    draws: int = Field(default=1, description="Draws pooled into this evidence: 1, or more when a verdict was "
                       "uncertain after the first (a sequential sample, each further draw on new seeds).")
