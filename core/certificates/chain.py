"""Walk a model's certificate chain offline: each version's certificate names the previous version's
certificate by the sha256 of its RFC 8785 canonical JSON (`lineage.previous_certificate_sha256`).

A chain is valid when every document's signature checks (core.certificates.service.verify_document), the
links join the given documents into one line from the newest back to an erasure of version 1, every
certificate is about the same model, and no concept erased earlier is missing from a later certificate's
lineage or failed its fresh measurement there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from core import signing
from core.canonical import canonicalize
from core.certificates.service import verify_document


def document_sha256(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonicalize(document)).hexdigest()


@dataclass(frozen=True)
class ChainLink:
    sha256: str
    request_id: str
    model_version: int
    concepts: list[str]


@dataclass(frozen=True)
class ChainResult:
    ok: bool
    reason: str
    links: list[ChainLink] = field(default_factory=list)  # newest first


def _lineage(document: dict[str, Any]) -> dict[str, Any] | None:
    lineage = document.get("certificate", {}).get("lineage")
    return lineage if isinstance(lineage, dict) else None


def verify_chain(documents: list[Any], public: signing.Ed25519PublicKey | None = None) -> ChainResult:
    """Check `documents` (any order) as one chain; the result lists it newest first."""
    if not documents:
        return ChainResult(False, "no certificates given")
    by_sha: dict[str, dict[str, Any]] = {}
    for i, document in enumerate(documents):
        result = verify_document(document, public)
        if not result.ok:
            return ChainResult(False, f"certificate {i + 1}: {result.reason}")
        if _lineage(document) is None:
            return ChainResult(False, f"certificate {i + 1} states no lineage (issued before model versions)")
        by_sha[document_sha256(document)] = document
    named = {_lineage(d)["previous_certificate_sha256"] for d in by_sha.values()}  # type: ignore[index]
    # The newest: named by no other (the latest model version among several such, the rest then fail below).
    heads = [sha for sha in by_sha if sha not in named]
    if not heads:
        return ChainResult(False, "the chain loops")
    head = max(heads, key=lambda h: int(_lineage(by_sha[h])["model_version"]))  # type: ignore[index]
    links: list[ChainLink] = []
    sha: str | None = head
    later: dict[str, Any] | None = None
    model_id = by_sha[head]["certificate"]["model"]["id"]
    while sha is not None:
        document = by_sha.get(sha)
        if document is None:
            return ChainResult(False, f"the chain is broken: {links[-1].request_id} names the previous certificate "
                                      f"{sha}, which is not among the files", links)
        cert = document["certificate"]
        lineage = _lineage(document)
        assert lineage is not None
        if cert["model"]["id"] != model_id:
            return ChainResult(False, f"certificate of {cert['request']['id']} is about another model", links)
        concepts = [c["target"] for c in lineage["erased_concepts"]]
        failed = [c["target"] for c in lineage["erased_concepts"] if c.get("passed") is not True]
        if failed:
            return ChainResult(False, f"{cert['request']['id']}: {', '.join(failed)} not measured as erased", links)
        if later is not None:
            kept = {c["target"].lower() for c in later["erased_concepts"]}
            lost = [c for c in concepts if c.lower() not in kept]
            if lost:
                return ChainResult(False, f"{links[-1].request_id} no longer lists {', '.join(lost)}, erased "
                                          f"by {cert['request']['id']}", links)
        links.append(ChainLink(sha, cert["request"]["id"], int(lineage["model_version"]), concepts))
        later = lineage
        sha = lineage.get("previous_certificate_sha256")
        if len(links) > len(by_sha):
            return ChainResult(False, "the chain loops", links)
    if links[-1].model_version != 1:
        return ChainResult(False, f"the chain stops at an erasure of version {links[-1].model_version}: "
                                  "it needs every certificate back to an erasure of version 1", links)
    if len(links) != len(by_sha):
        return ChainResult(False, f"{len(by_sha) - len(links)} certificate(s) are not on the chain", links)
    return ChainResult(True, f"valid chain of {len(links)} certificate(s)", links)
