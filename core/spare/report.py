"""The engine's report, typed: what one erasure did and measured (torch-free: the API and the verification
rule read it). `core.spare.outputs` writes report.json as its JSON dump; the worker, `verification.verify`, the
certificate and the API's `ErasureOut.metrics` read these models instead of guessing at keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.evaluation.evidence_schema import JudgeEvidence
from core.evaluation.metrics_schema import Metrics as GridMetrics


class ProbeMetrics(BaseModel):
    """Noise-space diagnostics on a fixed batch of the training prompts (they can fail a job, never pass one)."""

    forget_gap_closure_per_concept: dict[str, float] = Field(
        default_factory=dict, description="Per erased concept: the share of the noise gap to the forget target closed.")
    base_forget_gap: float
    forget_gap: float
    forget_gap_closure: float = Field(
        description="1 - forget_gap / base_forget_gap (1 = concept fully mapped to the forget target: the surrogate's "
                    "prediction, pushed past it by forget_repel).")
    retain_drift: float
    retain_drift_relative: float = Field(description="How far the kept prompts' noise prediction moved, relative.")


class GridSummary(BaseModel):
    """One erased concept on the canvas grid, scored by the model folder's own classifier (a diagnostic)."""

    ua: float
    ira: float
    cra: float
    ira_rel: float | None = None
    cra_rel: float | None = None
    base_ua: float | None = None
    attack_success: float | None = None
    # The images behind UA (the concept's own cells) and IRA/CRA (the rest), and their 95 % intervals.
    images_forget: int | None = None
    images_rest: int | None = None
    ua_interval: tuple[float, float] | None = None
    ira_rel_interval: tuple[float, float] | None = None
    cra_rel_interval: tuple[float, float] | None = None


class RoundThresholds(BaseModel):
    min_unlearning_accuracy: float
    min_retention: float


class RoundCheckMetrics(BaseModel):
    """The cheap held-out check of one round of erase-until-verified."""

    judge: JudgeEvidence | None = None
    thresholds: RoundThresholds | None = None
    judge_error: str | None = None
    extensions: int | None = Field(
        default=None, description="Times a failing but uncertain verdict drew as many images again (pooled).")


class EngineMetrics(BaseModel):
    """What the erasure measured: the judge's held-out evidence (the proof) and the diagnostics."""

    model_config = ConfigDict(extra="forbid")

    probe: ProbeMetrics | None = None
    judge: JudgeEvidence | None = Field(
        default=None, description="The judge's held-out evidence: judge name and version, per erased concept the "
        "prompts, seeds, images, UA with its 95 % interval; retention groups; seconds.",
    )
    judge_error: str | None = Field(default=None, description="Why no judge could run (the job is then unverified).")
    diagnostics_skipped: str | None = Field(
        default=None, description="Why the diagnostics (`testbed`, `summary`) are absent: the judge's held-out "
        "evidence refused the erasure before they were drawn.")
    testbed: GridMetrics | None = Field(default=None, description="Canvas-grid diagnostics (a folder declaring them).")
    summary: dict[str, GridSummary] | None = Field(default=None, description="Per erased concept: grid UA/IRA/CRA.")
    start_retention: dict[str, float] | None = Field(
        default=None, description="An erasure of a model version: the version it started from, measured against "
        "the same source (v1) — its value of each check of what must stay (held-out `retention[group:kind]`, grid "
        "IRA/CRA), by check name. A check the start already fails was lost before this erasure.")
    round_check: RoundCheckMetrics | None = None


def seconds_split(timings_s: Any) -> str:
    """A round's `timings_s` in words ("check 2.4 s, evaluation 23.1 s"); "" for a report from before the split."""
    if not isinstance(timings_s, dict) or not {"check", "evaluate"} <= timings_s.keys():
        return ""
    return f"check {timings_s['check']:.1f} s, evaluation {timings_s['evaluate']:.1f} s"


class RoundSummary(BaseModel):
    """One round of erase-until-verified: what changed, what the check saw, what became of it."""

    round: int
    levers: list[str]
    changed: dict[str, int | float | str | bool]
    surrogates: dict[str, str] = Field(default_factory=dict,
                                       description="Per erased concept, the surrogate this round trained toward.")
    seconds: float
    timings_s: dict[str, float] = Field(default_factory=dict, description="Where the round's seconds went: `check` "
                                        "(the cheap held-out check, its extensions included), `evaluate` (the full "
                                        "evaluation of a round whose check passed, or of the last one), `other` "
                                        "(training, samples, the before/after grid, writing).")
    ua: dict[str, float] | None
    retention: dict[str, float | None] | None
    passed: bool
    retention_ok: bool
    lost: dict[str, int] = Field(default_factory=dict, description="Per kept concept, the check's held-out images the "
                                 "base model drew as it and this round's model did not: what the round broke.")
    lost_to: dict[str, int] = Field(default_factory=dict, description="Per label, how many of those lost images "
                                    "the judge saw as it instead (a surrogate here is spreading over its neighbours).")
    refused: str | None = Field(default=None, description="Why the acceptance rule (the verification a job applies, "
                                "on more images) refused a round whose check passed; that round's UA and "
                                "retention are then the rule's numbers.")
    outcome: str = Field(description="kept | short | rolled back (retention)")


class SurrogateTried(BaseModel):
    surrogate: str
    confused: float = Field(description="Share of the base model's images of the surrogate the judge labels as the "
                            "concept (an upper bound on what the erasure's UA can reach is 1 minus it).")
    images: int
    tangled: float | None = Field(default=None, description="Share of the base model's images crossing the "
                                  "boundary between the surrogate and the concept that must stay it is most mixed "
                                  "up with (both concepts' images, both ways); None: not measured.")
    tangled_with: str | None = Field(default=None, description="That concept.")
    tangle_images: int | None = Field(default=None, description="The images `tangled` is a share of (both "
                                      "concepts' base images); None: not measured.")


class SurrogateScreen(BaseModel):
    """What the surrogate screen measured for one concept before the first round (or, for a switch the rounds'
    loop made, after round `after_round`), and what it chose."""

    concept: str
    kind: str
    chosen: str | None = Field(description="The surrogate the rounds trained towards (None: the neutral word).")
    named: bool = Field(description="The request named the surrogate (measured, never replaced).")
    tried: list[SurrogateTried]
    switched: bool
    seconds: float
    after_round: int | None = Field(default=None, description="The round whose lost images became the surrogate "
                                    "and made the loop switch it (None: the screen before the first round).")


class RoundsOutcome(BaseModel):
    chosen: int = Field(description="The round whose outputs were kept.")
    passed: bool = Field(description="Whether the kept round passed its check.")
    history: list[RoundSummary]
    surrogates: list[SurrogateScreen] = Field(
        default_factory=list, description="The surrogate screen before the first round, per concept, then every "
        "switch the loop made after a round.")

    def kept_surrogates(self) -> dict[str, str]:
        """Per erased concept, the surrogate the kept round trained toward."""
        return next((r.surrogates for r in self.history if r.round == self.chosen), {})


class RoundsRecord(RoundsOutcome):
    max_rounds: int
    time_budget_s: float | None
    requested_config: dict[str, Any]
    total_seconds: float


class Seeds(BaseModel):
    run: int
    grid: list[int]


class PromptsUsed(BaseModel):
    forget: dict[str, list[str]]
    surrogates: dict[str, str]
    retain: list[str]
    forget_samples: int
    retain_samples: int
    example_images: int
    forget_anchor: str
    anchor_samples: int


class AdapterInfo(BaseModel):
    target_modules: list[str]
    rank: int
    alpha: float
    rank_pattern: dict[str, int]
    trainable_parameters: int
    weight_mask: bool
    portable_adapter_note: str
    # The retain-span projection of the text-side layers (core.spare.projection), when configured.
    retain_projection: dict[str, Any] | None = None


class EsdInfo(BaseModel):
    trained_parameters: int
    train: str


class GridImages(BaseModel):
    prompts: list[str]
    kinds: list[str]
    seeds: list[int]


class Sizes(BaseModel):
    unet_bytes: int
    adapter_bytes: int | None
    adapter_fraction_of_unet: float | None
    fused_bytes: int


class Memory(BaseModel):
    peak_rss_bytes: int
    start_rss_bytes: int
    stage_peak_rss_bytes: dict[str, int]
    cuda_peak_allocated_bytes: int | None = None
    stage_cuda_peak_allocated_bytes: dict[str, int] | None = None


class FileEntry(BaseModel):
    sha256: str
    bytes: int


class ErasureReport(BaseModel):
    """Everything one erasure did and measured; report.json is its JSON dump."""

    model_config = ConfigDict(extra="forbid")

    method: str
    architecture: str
    inputs: dict[str, Any] = Field(description="The ErasureSpec as run.")
    config: dict[str, Any] = Field(description="The method's config as run.")
    device: str
    dtype: str
    seeds: Seeds
    versions: dict[str, str]
    prompts: PromptsUsed
    saliency: dict[str, Any] | None = None
    timesteps: dict[str, Any] | None = None
    loss_curve: dict[str, list[float]]
    adapter: AdapterInfo | None = None
    esd: EsdInfo | None = None
    metrics: EngineMetrics
    grid: GridImages
    sizes: Sizes
    timings_s: dict[str, float] = Field(default_factory=dict, description="Seconds per stage, and `total`.")
    memory: Memory | None = None
    files: dict[str, FileEntry] = Field(default_factory=dict)
    rounds: RoundsRecord | None = None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass
class ErasureResult:
    """One erasure's outputs: the folder, its files by relative name, and the typed report."""

    out_dir: Path
    report: ErasureReport
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def metrics(self) -> EngineMetrics:
        return self.report.metrics
