"""The lineage a certificate states: the version the erasure ran on, the previous version's certificate
(its sha256: a chain a third party walks offline with `lethe certificate verify --chain`), and every concept
erased so far with the fresh measurement this erasure's verification took of it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.erasure.models import ErasureRequest
from core.versions import repository


def lineage_statement(session: Session, request: ErasureRequest) -> dict[str, Any]:
    number = request.model_version or 1
    base = repository.get(session, request.model_id, number)
    earlier = list(base.erased_concepts) if base is not None and number > 1 else []
    metrics = request.metrics or {}
    measured = {c["concept"]: c for c in (metrics.get("judge") or {}).get("concepts") or []}
    checks = metrics.get("verification") or {}
    own = {c["target"].lower() for c in request.concepts}
    concepts = [{"target": c["target"], "kind": c["kind"], "version": c["version"], "erasure_id": c["erasure_id"]}
                for c in earlier if c["target"].lower() not in own]
    concepts += [{"target": c["target"], "kind": c["kind"], "version": None, "erasure_id": str(request.id)}
                 for c in request.concepts]
    for concept in concepts:
        fresh = measured.get(concept["target"]) or {}
        check = checks.get(f"ua[{concept['target']}]") or {}
        concept.update({"ua": fresh.get("ua"), "ua_interval": fresh.get("ua_interval"), "images": fresh.get("images"),
                        "passed": check.get("passed")})
    return {
        "model_version": number,
        "base_fingerprint": base.fingerprint if base is not None else None,
        "previous_certificate_sha256": base.certificate_sha256 if base is not None and number > 1 else None,
        "retention_against_version": 1,
        "erased_concepts": concepts,
    }
