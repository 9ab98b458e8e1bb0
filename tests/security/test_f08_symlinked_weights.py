"""Finding 8: a model folder inside LETHE_MODEL_ROOTS whose weight file is a symlink to a file outside the
roots was validated `ready` (and would have been loaded and fingerprinted), though links out are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.registry.models import ModelStatus
from tests.api_support import ApiEnv
from tests.security.conftest import validate

WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


def _register(env: ApiEnv, folder: Path) -> str:
    r = env.client.post("/v1/models", json={"name": folder.name, "source_uri": f"file://{folder}"},
                        headers=env.auth())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_weight_file_linked_out_of_the_roots_is_refused(file_env: ApiEnv, tiny_model: Path,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    env = file_env
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(tiny_model / WEIGHTS, outside / "weights.safetensors")
    folder = env.model_root / "linked-out"
    shutil.copytree(tiny_model, folder)
    (folder / WEIGHTS).unlink()
    (folder / WEIGHTS).symlink_to(outside / "weights.safetensors")
    model = validate(_register(env, folder))
    assert model.status == ModelStatus.invalid, "a weight file linked out of the roots was accepted"
    reason = model.status_reason or ""
    assert WEIGHTS in reason and "outside" in reason
    assert str(outside) not in reason and str(env.model_root) not in reason

    # A linked folder (e.g. unet/ -> elsewhere) is refused the same way.
    shutil.copytree(tiny_model / "unet", outside / "unet")
    folder2 = env.model_root / "dir-linked-out"
    shutil.copytree(tiny_model, folder2)
    shutil.rmtree(folder2 / "unet")
    (folder2 / "unet").symlink_to(outside / "unet")
    assert validate(_register(env, folder2)).status == ModelStatus.invalid

    # A registered folder swapped for a link out after registration is refused when it is used.
    folder3 = env.model_root / "swapped"
    shutil.copytree(tiny_model, folder3)
    model_id = _register(env, folder3)
    shutil.rmtree(folder3)
    shutil.copytree(tiny_model, outside / "swapped")
    folder3.symlink_to(outside / "swapped")
    assert validate(model_id).status == ModelStatus.invalid


def test_links_that_stay_inside_the_roots_are_fine(file_env: ApiEnv, tiny_model: Path) -> None:
    env = file_env
    shared = env.model_root / "shared-weights"
    shared.mkdir()
    shutil.copy(tiny_model / WEIGHTS, shared / "unet.safetensors")
    folder = env.model_root / "linked-in"
    shutil.copytree(tiny_model, folder)
    (folder / WEIGHTS).unlink()
    (folder / WEIGHTS).symlink_to(shared / "unet.safetensors")
    model = validate(_register(env, folder))
    assert model.status == ModelStatus.ready, model.status_reason
