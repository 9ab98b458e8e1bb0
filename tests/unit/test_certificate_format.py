"""Certificates anyone can verify: RFC 8785 canonical JSON and a detached JWS (EdDSA) checked by standard tools.

The blocks of docs/compliance.md that verify a certificate without Lethe (openssl, and the generic JOSE library
joserfc) run here exactly as written, on a certificate signed by Lethe's code: they accept it and reject an
altered copy. (tests/e2e/test_docs_commands.py runs the same blocks again against a real server.)
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core import signing
from core.audit.chain import canonical_json
from core.canonical import canonicalize, to_json_data
from core.certificates.service import body_digest, sign_certificate, verify_document
from tests.e2e.test_docs_commands import fenced_blocks

ROOT = Path(__file__).resolve().parents[2]


def test_jcs_matches_rfc_8785() -> None:
    # RFC 8785 section 3.2.3: members sorted by UTF-16 code units (U+1F600 is D83D DE00, before U+FB33).
    members = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
               "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
               "\u00f6": "Latin Small Letter O With Diaeresis"}
    order = [k for k, _ in re.findall(r'"((?:[^"\\]|\\.)*)":"([^"]*)"', canonicalize(members).decode())]
    assert order == ["\\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    # Section 3.2.2.3 / appendix B: numbers as ECMAScript writes them.
    numbers = [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001, -0.0, 1e21, 1e-7, 100.0]
    assert canonicalize(numbers) == b"[333333333.3333333,1e+30,4.5,0.002,1e-27,0,1e+21,1e-7,100]"
    # Section 3.2.4's example, whitespace and escapes normalised.
    text = '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' \
           '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}'
    assert canonicalize(json.loads(text)) == (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()


def test_json_data_is_what_jcs_reads() -> None:
    import uuid

    rid = uuid.uuid4()
    assert to_json_data({"a": 1.0, "b": float("nan"), "c": rid, "d": (1, 2.5)}) == {
        "a": 1, "b": None, "c": str(rid), "d": [1, 2.5]}
    with pytest.raises(ValueError, match="I-JSON"):
        to_json_data({"too_big": 2**60})


def _certificate() -> dict:
    return to_json_data({
        "version": 2, "id": "c0ffee00-0000-4000-8000-000000000001", "issuer": "lethe",
        "issued_at": "2026-12-01T12:00:00.123456+00:00",
        "request": {"id": "r1", "legal": {"basis": "Art. 17 DSGVO — Löschung", "regime": "gdpr"},
                    "concepts": [{"target": "Van Gogh", "surrogate": "a plain painting", "kind": "style"}]},
        "metrics": {"ua": 0.9750000000000001, "ira_rel": 1.0, "drift": 3.1e-05, "steps": 200,
                    "verification": {"ua": {"value": 0.975, "min": 0.9, "passed": True}}},
        "artifacts": [{"name": "fused/unet/diffusion_pytorch_model.safetensors", "sha256": "ab" * 32, "size": 7}],
        "audit": {"seq": 12, "hash": "cd" * 32},
        "\U0001f600": "member names outside the BMP sort by UTF-16 code units",
    })


def test_lethe_verifies_its_jws_and_legacy_certificates() -> None:
    key = Ed25519PrivateKey.generate()
    doc = sign_certificate(key, _certificate())
    sig = doc["signature"]
    assert sig["alg"] == "EdDSA" and sig["key_id"] == signing.key_id(key.public_key())
    header_b64, empty, _ = sig["jws"].split(".")
    assert empty == "" and signing.jws_header(sig["jws"]) == {"alg": "EdDSA", "kid": sig["key_id"]}
    assert verify_document(doc, key.public_key()).ok
    assert verify_document(json.loads(json.dumps(doc, indent=2)), key.public_key()).ok  # formatting is free
    altered = json.loads(json.dumps(doc))
    altered["certificate"]["metrics"]["ua"] = 0.975  # a last-digit change of a float
    assert "altered" in verify_document(altered, key.public_key()).reason
    swapped = json.loads(json.dumps(doc))
    swapped["signature"]["jws"] = header_b64.replace("E", "F", 1) + "." + sig["jws"].split(".", 1)[1]
    assert not verify_document(swapped, key.public_key()).ok
    # An attached-payload JWS or another algorithm is not accepted as a certificate signature.
    other = json.loads(json.dumps(doc))
    none_header = signing.b64url(b'{"alg":"none"}')
    other["signature"]["jws"] = none_header + ".." + sig["jws"].split("..")[1]
    assert "unsupported JWS algorithm" in verify_document(other, key.public_key()).reason
    # The audit event's digest is sha256 over JCS too.
    import hashlib

    body = {k: v for k, v in doc["certificate"].items() if k != "audit"}
    assert body_digest(doc["certificate"]) == hashlib.sha256(canonicalize(body)).hexdigest()
    # Version-1 certificates (Ed25519 over sorted-key json.dumps) still verify.
    legacy_body = {"version": 1, "metrics": {"ua": 0.97}}
    legacy = {"certificate": legacy_body, "signature": {
        "alg": "Ed25519", "key_id": signing.key_id(key.public_key()),
        "public_key": base64.b64encode(signing.public_raw(key.public_key())).decode(),
        "value": base64.b64encode(key.sign(canonical_json(legacy_body).encode())).decode()}}
    assert verify_document(legacy, key.public_key()).ok
    legacy["certificate"]["metrics"]["ua"] = 0.2
    assert not verify_document(legacy, key.public_key()).ok


def _standard_tool_blocks() -> list[str]:
    blocks = [body for _, body in fenced_blocks(ROOT / "docs" / "compliance.md", "bash")
              if "openssl pkeyutl" in body or "joserfc" in body]
    assert len(blocks) == 2, "compliance.md should show one openssl and one JOSE-library verification"
    return blocks


def _run(block: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("tool", ["openssl", "joserfc"])
def test_standard_tools_verify_as_the_docs_show(tool: str, tmp_path: Path) -> None:
    if tool == "openssl":
        assert shutil.which("openssl"), "openssl is needed (apt-get install openssl)"
        version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
        assert re.match(r"OpenSSL [3-9]\.", version), f"Ed25519 raw verify needs OpenSSL 3: {version}"
    block = next(b for b in _standard_tool_blocks() if ("openssl pkeyutl" in b) == (tool == "openssl"))
    key = Ed25519PrivateKey.generate()
    doc = sign_certificate(key, _certificate())
    (tmp_path / "lethe-signing.pem").write_text(signing.public_key_pem(key.public_key()))
    # As served by the API (JSONResponse: compact, UTF-8 as is) — any formatting verifies the same.
    (tmp_path / "certificate.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    ok = _run(block, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "signature valid for certificate c0ffee00-0000-4000-8000-000000000001" in ok.stdout, ok.stdout

    altered = json.loads(json.dumps(doc))
    altered["certificate"]["request"]["legal"]["basis"] = "consent withdrawn"
    (tmp_path / "certificate.json").write_text(json.dumps(altered), encoding="utf-8")
    bad = _run(block, tmp_path)
    assert bad.returncode != 0 and "signature valid" not in bad.stdout, bad.stdout

    stranger = Ed25519PrivateKey.generate()
    (tmp_path / "certificate.json").write_text(json.dumps(doc), encoding="utf-8")
    (tmp_path / "lethe-signing.pem").write_text(signing.public_key_pem(stranger.public_key()))
    assert _run(block, tmp_path).returncode != 0
