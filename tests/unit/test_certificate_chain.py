"""`lethe certificate verify --chain` logic on signed documents: links by sha256 back to version 1, one
model, no erased concept lost, every signature valid."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.certificates.chain import document_sha256, verify_chain
from core.certificates.service import sign_certificate

KEY = Ed25519PrivateKey.generate()


def _doc(request: str, version: int, previous: str | None, concepts: list[str], *, model: str = "m1",
         passed: bool = True) -> dict[str, Any]:
    certificate = {
        "version": 2, "id": request, "issuer": "lethe", "issued_at": "2026-12-01T00:00:00+00:00",
        "request": {"id": request}, "model": {"id": model},
        "lineage": {"model_version": version, "previous_certificate_sha256": previous,
                    "retention_against_version": 1,
                    "erased_concepts": [{"target": c, "kind": "object", "version": None, "erasure_id": request,
                                         "ua": 1.0, "passed": passed} for c in concepts]},
    }
    return sign_certificate(KEY, certificate)


def _chain() -> list[dict[str, Any]]:
    v2 = _doc("e1", 1, None, ["star"])
    v3 = _doc("e2", 2, document_sha256(v2), ["star", "dotted"])
    v4 = _doc("e3", 3, document_sha256(v3), ["star", "dotted", "heart"])
    return [v2, v3, v4]


def test_a_complete_chain_verifies_in_any_order() -> None:
    v2, v3, v4 = _chain()
    result = verify_chain([v3, v4, v2], KEY.public_key())
    assert result.ok, result.reason
    assert [(link.request_id, link.model_version) for link in result.links] == [("e3", 3), ("e2", 2), ("e1", 1)]


def test_a_missing_or_extra_certificate_breaks_the_chain() -> None:
    v2, v3, v4 = _chain()
    missing = verify_chain([v4, v2])
    assert not missing.ok and "not among the files" in missing.reason
    stops = verify_chain([v4, v3])
    assert not stops.ok and "not among the files" in stops.reason
    other = _doc("x", 1, None, ["circle"])
    assert "1 certificate(s) are not on the chain" in verify_chain([v2, v3, v4, other]).reason


def test_altered_lost_concept_other_model_and_failed_measurement_are_refused() -> None:
    v2, v3, _ = _chain()
    altered = {**v3, "certificate": {**v3["certificate"], "issued_at": "2020-01-01T00:00:00+00:00"}}
    assert "altered or forged" in verify_chain([altered, v2]).reason
    lost = _doc("e2", 2, document_sha256(v2), ["dotted"])
    assert "no longer lists star" in verify_chain([lost, v2]).reason
    foreign = _doc("e2", 2, document_sha256(v2), ["star", "dotted"], model="m2")
    assert "another model" in verify_chain([foreign, v2]).reason
    unmeasured = _doc("e2", 2, document_sha256(v2), ["star", "dotted"], passed=False)
    assert "not measured as erased" in verify_chain([unmeasured, v2]).reason
    other_key = Ed25519PrivateKey.generate().public_key()
    assert "different key" in verify_chain([v3, v2], other_key).reason
