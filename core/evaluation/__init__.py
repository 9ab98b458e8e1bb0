"""Evaluation: adherence, erasure metrics (UA/IRA/CRA), noise-space metrics, robustness probe, grids."""

from core.evaluation.adherence import Adherence, prompt_adherence
from core.evaluation.metrics import Metrics, TargetMetrics, concept_kind, evaluate

__all__ = ["Adherence", "Metrics", "TargetMetrics", "concept_kind", "evaluate", "prompt_adherence"]
