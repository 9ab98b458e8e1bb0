"""What an erase job starts from, and re-verification of a lineage of erasures.

By default a job erases the registered source. A model-versions domain registers a resolver in
`BASE_RESOLVERS` (core.versions.handlers) that returns the weights of the version the request names and the
concepts erased in v2..vN: the job then trains those weights and is judged on every concept of the lineage
as well as its own (still erased, same judge, same thresholds), with retention measured against v1 — the
job's evaluator is built for the extended concept list and called with the source pipeline as its base.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Settings
from core.spare.evaluator import Evaluator


@dataclass(frozen=True)
class ErasureBase:
    number: int
    weights_dir: Path
    fingerprint: str | None
    # Concepts erased in v2..vN: [{"target", "kind", "surrogate", "version", "erasure_id"}].
    lineage: list[dict[str, Any]] = field(default_factory=list)


# (tenant_id, model_id, version number or None, source folder, source fingerprint, settings) -> the base, or
# None when the resolver has nothing to say (version 1: the source).
BaseResolver = Callable[..., "ErasureBase | None"]
BASE_RESOLVERS: list[BaseResolver] = []


def resolve_base(*, tenant_id: Any, model_id: Any, number: int | None, source_dir: Path,
                 source_fingerprint: str | None, settings: Settings) -> ErasureBase:
    for resolver in BASE_RESOLVERS:
        base = resolver(tenant_id=tenant_id, model_id=model_id, number=number, source_dir=source_dir,
                        source_fingerprint=source_fingerprint, settings=settings)
        if base is not None:
            return base
    return ErasureBase(1, source_dir, source_fingerprint)


def erased_targets(lineage: Sequence[dict[str, Any]]) -> list[str]:
    """The concepts a version has lost already (its lineage's targets, oldest first)."""
    return [c["target"] for c in lineage]


def with_lineage(spec: Any, lineage: list[dict[str, Any]]) -> Any:
    """The request's spec plus the concepts earlier versions erased (those the request repeats count once)."""
    from core.spare.specs import ConceptSpec

    own = {c.target.lower() for c in spec.concepts}
    earlier = [ConceptSpec(target=c["target"], kind=c["kind"], surrogate=c.get("surrogate"))
               for c in lineage if c["target"].lower() not in own]
    return spec.model_copy(update={"concepts": [*spec.concepts, *earlier]}) if earlier else spec


def against_source(evaluator: Evaluator, source: Callable[[], Any], *, min_retention: float) -> Evaluator:
    """`evaluator` called with the source pipeline (v1) in place of the version the erasure started from.

    When a retention-side check (held-out retention, grid IRA/CRA) falls below `min_retention`, the version
    itself is measured against v1 too — once per job, same evaluator with every diagnostic (`complete`), same
    held-out seeds (v1's images are drawn once for both) — and its values of those checks go with the result as
    `start_retention`: a retention the version had lost already is not this erasure's doing, and no round
    trained from the version (its outputs are the retain teacher) can win it back. A round that keeps
    retention costs nothing more."""
    from core.erasure.verification import retention_side
    from core.spare.report import EngineMetrics

    start: dict[str, dict[str, float]] = {}

    def side(metrics: dict[str, Any]) -> dict[str, float]:
        return retention_side(EngineMetrics.model_validate(
            {k: v for k, v in metrics.items() if k in EngineMetrics.model_fields}))

    def evaluate(erased: Any, version: Any, complete: bool = False,
                 judged: dict[str, Any] | None = None) -> dict[str, Any]:
        v1 = source()
        metrics = evaluator(erased, v1, complete=complete, judged=judged)
        if "checks" not in start and any(v < min_retention for v in side(metrics).values()):
            start["checks"] = side(evaluator(version, v1, complete=True))
        return {**metrics, "start_retention": start["checks"]} if "checks" in start else metrics

    return evaluate
