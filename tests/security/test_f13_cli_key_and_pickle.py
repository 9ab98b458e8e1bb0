"""Finding 13 (info): `lethe certificate verify` without `--public-key` created a signing key in a fresh data
dir and then reported "different key"; pickle safety rested on torch defaults (pyproject allowed torch 2.4)
while load_pipeline did not insist on safetensors."""

from __future__ import annotations

import base64
import json
import shutil
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.requirements import Requirement
from packaging.version import Version
from typer.testing import CliRunner

from core import signing
from core.cli.app import app as cli
from core.config import get_settings
from core.registry.models import ModelStatus
from core.spare.errors import UnsupportedModelError
from tests.api_support import ApiEnv
from tests.security.conftest import validate

REPO = Path(__file__).resolve().parents[2]


def _certificate(tmp_path: Path, key: Ed25519PrivateKey, name: str = "certificate.json") -> Path:
    body = {"id": "c-1", "request": {"id": "r-1"}, "model": {"fingerprint_before": "ab" * 32},
            "issued_at": "2026-12-01T00:00:00+00:00", "audit": {"seq": 1}}
    path = tmp_path / name
    public = key.public_key()
    signature = {"alg": "EdDSA", "key_id": signing.key_id(public),
                 "public_key": base64.b64encode(signing.public_raw(public)).decode(),
                 "jws": signing.sign_detached(key, body)}
    path.write_text(json.dumps({"certificate": body, "signature": signature}))
    return path


def _verify(data_dir: Path, *args: str) -> tuple[int, str]:
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["certificate", "verify", *args], env={"LETHE_DATA_DIR": str(data_dir)})
    get_settings.cache_clear()
    return result.exit_code, result.output


def test_verify_without_a_key_in_a_fresh_data_dir(tmp_path: Path) -> None:
    issuer = Ed25519PrivateKey.generate()
    cert = _certificate(tmp_path, issuer)
    fresh = tmp_path / "fresh-data"
    code, out = _verify(fresh, str(cert))
    assert code == 2, out
    assert "--public-key" in out and "different key" not in out
    assert not (fresh / "signing.key").exists(), "verifying must not create a signing key"
    # The documented ways still work: an explicit trusted key, or integrity only.
    pem = tmp_path / "issuer.pem"
    pem.write_text(signing.public_key_pem(issuer.public_key()))
    assert _verify(fresh, str(cert), "--public-key", str(pem))[0] == 0
    assert _verify(fresh, str(cert), "--trust-embedded")[0] == 0
    # On the server that signed it (its signing.key in the data dir) no flag is needed.
    server = tmp_path / "server-data"
    server.mkdir()
    (server / "signing.key").write_bytes(signing._new_pem())
    own = _certificate(tmp_path, signing.parse_private_key((server / "signing.key").read_bytes()), "own.json")
    assert _verify(server, str(own))[0] == 0
    code, out = _verify(server, str(cert))
    assert code == 1 and "different key" in out


def test_torch_floor_keeps_weights_only_loading() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["optional-dependencies"]["worker"]  # the processes that load models
    (torch,) = [Requirement(d) for d in deps if Requirement(d).name == "torch"]
    floor = min(Version(s.version) for s in torch.specifier if s.operator in (">=", "==", "~="))
    assert floor >= Version("2.6"), f"torch {torch.specifier}: torch.load is weights_only by default from 2.6"


def test_pickle_checkpoints_are_refused(file_env: ApiEnv, tiny_model: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from core.spare.loading import load_pipeline

    folder = file_env.model_root / "pickled"
    StableDiffusionPipeline.from_pretrained(str(tiny_model)).save_pretrained(folder, safe_serialization=False)
    assert list(folder.glob("unet/*.bin")) and not list(folder.glob("unet/*.safetensors"))
    with pytest.raises(UnsupportedModelError, match="safetensors"):
        load_pipeline(folder)
    r = file_env.client.post("/v1/models", json={"name": "pickled", "source_uri": f"file://{folder}"},
                             headers=file_env.auth())
    model = validate(r.json()["id"])
    assert model.status == ModelStatus.invalid and "safetensors" in (model.status_reason or "")
    # The same model in safetensors loads and validates.
    shutil.copytree(tiny_model, file_env.model_root / "safe")
    load_pipeline(file_env.model_root / "safe")
