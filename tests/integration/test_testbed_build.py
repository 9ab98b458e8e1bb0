"""The builder (tiny CI profile) and the `lethe testbed` commands, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline

from core.testbed.canvas import HELDOUT_TEMPLATES
from core.testbed.paths import SHIPPED
from core.testbed.profiles import profile_named
from core.testbed.train import build


def _lethe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


@pytest.mark.slow(minutes=0.35)
def test_tiny_build_writes_a_loadable_testbed_that_becomes_the_default(data_dir: Path) -> None:
    r = _lethe("testbed", "build", "--profile", "tiny", env={"LETHE_DATA_DIR": str(data_dir)})
    assert r.returncode == 0, r.stderr[-2000:]
    out = data_dir / "testbed"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"]["name"] == "tiny"
    assert {"pipeline/unet/diffusion_pytorch_model.safetensors", "classifier/model.safetensors"} <= set(
        manifest["files"]
    )
    for key in ("classifier_heldout", "vae_reconstruction", "adherence", "guidance_sweep"):
        assert key in manifest["accuracies"]
    assert manifest["training_minutes"]["total"] > 0

    pipe = StableDiffusionPipeline.from_pretrained(str(out / "pipeline"))
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size

    path = _lethe("testbed", "path", env={"LETHE_DATA_DIR": str(data_dir)})
    assert path.returncode == 0 and path.stdout.strip() == str(out)


def test_path_falls_back_to_the_shipped_testbed(data_dir: Path) -> None:
    r = _lethe("testbed", "path", env={"LETHE_DATA_DIR": str(data_dir)})
    assert r.returncode == 0 and r.stdout.strip() == str(SHIPPED)


def test_concepts_json() -> None:
    r = _lethe("testbed", "concepts", "--json")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert set(data) == {"objects", "styles"}
    assert len(data["objects"]) >= 6 and len(data["styles"]) >= 5


def test_build_is_deterministic_by_seed(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    quick = {"classifier_steps": 4, "vae_steps": 4, "unet_steps": 4, "images_per_pair": 2, "heldout_per_pair": 1}
    a = build(tmp_path / "a", profile_named("tiny", **quick))
    b = build(tmp_path / "b", profile_named("tiny", **quick))
    c = build(tmp_path / "c", profile_named("tiny", seed=1, **quick))
    weights = [k for k in a["files"] if k.endswith(".safetensors")]
    assert len(weights) == 4
    assert all(a["files"][k] == b["files"][k] for k in weights)
    assert (
        a["files"]["pipeline/unet/diffusion_pytorch_model.safetensors"]
        != c["files"]["pipeline/unet/diffusion_pytorch_model.safetensors"]
    )


def test_exclude_leaves_a_concept_out_of_the_unets_data_only(tmp_path: Path) -> None:
    """A retrained-from-scratch reference: same classifier and VAE, a UNet that never saw the concept."""
    torch.set_num_threads(1)
    quick = {"classifier_steps": 4, "vae_steps": 4, "unet_steps": 4, "images_per_pair": 2, "heldout_per_pair": 1}
    full = build(tmp_path / "full", profile_named("tiny", **quick))
    held = build(tmp_path / "held", profile_named("tiny", exclude=("triangle",), **quick))
    assert list(held["profile"]["exclude"]) == ["triangle"] and not full["profile"]["exclude"]
    for same in ("classifier/model.safetensors", "pipeline/vae/diffusion_pytorch_model.safetensors"):
        assert full["files"][same] == held["files"][same]
    unet = "pipeline/unet/diffusion_pytorch_model.safetensors"
    assert full["files"][unet] != held["files"][unet]


def test_stages_seeded_from_a_finished_testbed_are_reused_only_when_their_settings_match(tmp_path: Path) -> None:
    from core.testbed.stage_cache import seed_stages

    torch.set_num_threads(1)
    quick = {"classifier_steps": 4, "vae_steps": 4, "unet_steps": 4, "images_per_pair": 2, "heldout_per_pair": 1}
    first = build(tmp_path / "first", profile_named("tiny", **quick))
    variant = profile_named("tiny", exclude=("star",), **quick)
    assert seed_stages(tmp_path / "stages", tmp_path / "first", variant) == ["classifier", "vae"]
    held = build(tmp_path / "held", variant, stages_dir=tmp_path / "stages")
    assert {"classifier", "vae"} <= set(held["stages_reused"])
    for same in ("classifier/model.safetensors", "pipeline/vae/diffusion_pytorch_model.safetensors"):
        assert held["files"][same] == first["files"][same]
    other = profile_named("tiny", **{**quick, "classifier_steps": 5})
    assert seed_stages(tmp_path / "other", tmp_path / "first", other) == ["vae"]


def test_training_pool_drops_every_image_of_an_excluded_concept() -> None:
    import numpy as np

    from core.testbed.canvas import OBJECTS, STYLES
    from core.testbed.phases import training_pool

    objs, styles = np.repeat(np.arange(len(OBJECTS)), len(STYLES)), np.tile(np.arange(len(STYLES)), len(OBJECTS))
    assert training_pool(objs, styles, ()) is None
    pool = training_pool(objs, styles, ("triangle", "dotted"))
    assert pool is not None
    kept = {(OBJECTS[objs[i]], STYLES[styles[i]]) for i in pool.tolist()}
    assert len(kept) == (len(OBJECTS) - 1) * (len(STYLES) - 1)
    assert not any(o == "triangle" or s == "dotted" for o, s in kept)


def test_build_rejects_an_unknown_excluded_concept(data_dir: Path) -> None:
    r = _lethe("testbed", "build", "--profile", "tiny", "--exclude", "hexagon",
               env={"LETHE_DATA_DIR": str(data_dir)})
    assert r.returncode == 2 and "hexagon" in r.stderr and "Traceback" not in r.stderr
    r = _lethe("testbed", "build", "--profile", "tiny", "--stages-from", str(SHIPPED),
               env={"LETHE_DATA_DIR": str(data_dir)})
    assert r.returncode == 2 and "--stages" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow(minutes=0.35)
def test_eval_json_contract_on_the_shipped_testbed() -> None:
    r = _lethe(
        "testbed",
        "eval",
        "--model",
        str(SHIPPED / "pipeline"),
        "--forget",
        "circle",
        "--forget",
        "dotted",
        "--seeds",
        "1",
        "--steps",
        "6",
        "--attack-budget",
        "2",
        "--json",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(r.stdout)
    assert set(data) == {"model", "targets", "images", "seconds"}
    assert set(data["model"]) == {"object_accuracy", "style_accuracy"}
    assert [t["forget"] for t in data["targets"]] == ["circle", "dotted"]
    assert [t["kind"] for t in data["targets"]] == ["object", "style"]
    for t in data["targets"]:
        assert set(t) == {"forget", "kind", "ua", "ira", "cra", "ira_rel", "cra_rel", "attack_success"}
        assert all(0.0 <= t[k] <= 1.0 for k in ("ua", "ira", "cra", "attack_success"))
    # Model grid + base grid (a fresh process) + each target's attack images (held-out prompts and soft prompts).
    # circle: 5 styles as contexts; dotted: 6 objects. Synonyms: 2 per concept × 3 templates; 3 soft prompts.
    per_target = (len(HELDOUT_TEMPLATES) * 5 + 5 * 2 * 3 + 3) + (len(HELDOUT_TEMPLATES) * 6 + 6 * 2 * 3 + 3)
    assert data["images"] == 30 + 30 + 2 * per_target and data["seconds"] > 0  # the probe uses 2 fixed seeds


@pytest.mark.slow(minutes=0.3)
def test_eval_rejects_bad_input_without_a_traceback(tmp_path: Path) -> None:
    r = _lethe("testbed", "eval", "--model", str(SHIPPED / "pipeline"), "--forget", "dog", "--json")
    assert r.returncode == 2 and "unknown concept 'dog'" in r.stderr and "Traceback" not in r.stderr
    r = _lethe("testbed", "eval", "--model", str(tmp_path), "--json")
    assert r.returncode == 2 and "cannot load a pipeline" in r.stderr and "Traceback" not in r.stderr
    r = _lethe("testbed", "build", "--profile", "huge", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown profile 'huge'" in r.stderr


def test_loading_errors_are_clear(tmp_path: Path) -> None:
    import pytest

    from core.testbed import is_testbed, load_classifier, load_pipeline

    assert not is_testbed(tmp_path)
    (tmp_path / "manifest.json").write_text("not json")
    assert not is_testbed(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"model_index\.json missing"):
        load_pipeline(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config\.json missing"):
        load_classifier(tmp_path)
