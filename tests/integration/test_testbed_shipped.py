"""The testbed shipped with the package: intact, loadable offline, and as good as its manifest says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from core.evaluation.adherence import prompt_adherence
from core.testbed import is_testbed, load_classifier, load_manifest, paths
from core.testbed.canvas import OBJECTS, STYLES, render
from core.testbed.paths import SHIPPED
from core.testbed.saving import file_hashes

# A re-measurement on a subset of seeds must land within this distance of the manifest's full measurement.
TOLERANCE = 0.10


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


def test_shipped_testbed_is_the_default_and_intact() -> None:
    assert paths.testbed_dir() == SHIPPED
    manifest = load_manifest()
    assert manifest["objects"] == list(OBJECTS) and manifest["styles"] == list(STYLES)
    assert file_hashes(SHIPPED) == manifest["files"], "shipped files differ from their manifest sha256"
    assert is_testbed(SHIPPED) and is_testbed(SHIPPED / "pipeline")
    size = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert size < 12 * 2**20, f"shipped testbed is {size / 2**20:.1f} MiB"


def test_manifest_records_the_quality_bar() -> None:
    m = load_manifest()
    acc = m["accuracies"]
    assert acc["classifier_heldout"]["object"] >= 0.97 and acc["classifier_heldout"]["style"] >= 0.97
    ad = acc["adherence"]
    assert len(m["seeds"]["eval"]) >= 8
    assert ad["object_accuracy"] >= 0.90 and ad["style_accuracy"] >= 0.90
    assert min(ad["per_object"].values()) >= 0.75 and min(ad["per_style"].values()) >= 0.75
    assert acc["meets_bar"] is True
    assert m["sampling_seconds_64"] <= 10.0
    for key in ("profile", "training_minutes", "files", "sampling"):
        assert key in m
    json.dumps(m)


def test_shipped_tokenizer_reloads_to_the_same_ids() -> None:
    from transformers import CLIPTokenizer

    from core.testbed.model import build_tokenizer

    shipped = CLIPTokenizer.from_pretrained(str(SHIPPED / "pipeline" / "tokenizer"))
    built = build_tokenizer()
    assert shipped.model_max_length == built.model_max_length
    for p in ("a star image in dotted style", "a picture of a heart drawn in checkered style", ""):
        assert shipped(p, padding="max_length").input_ids == built(p, padding="max_length").input_ids


def test_classifier_re_measured_on_fresh_renders() -> None:
    clf = load_classifier()
    pairs = [(o, s) for o in OBJECTS for s in STYLES]
    imgs = np.stack([np.asarray(render(o, s, 5_000_000 + k)) for o, s in pairs for k in range(4)])
    yo = torch.tensor([OBJECTS.index(o) for o, _ in pairs for _ in range(4)])
    ys = torch.tensor([STYLES.index(s) for _, s in pairs for _ in range(4)])
    po, ps = clf.predict(imgs)
    assert (po == yo).float().mean() >= 0.95 and (ps == ys).float().mean() >= 0.95


def test_pipeline_adherence_re_measured_on_a_subset() -> None:
    # The contract: a plain diffusers load under HF_HUB_OFFLINE works (set by conftest or the loader).
    pipe = StableDiffusionPipeline.from_pretrained(str(SHIPPED / "pipeline"), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    m = load_manifest()
    ad = prompt_adherence(
        pipe,
        load_classifier(),
        seeds=m["seeds"]["eval"][:2],
        steps=m["sampling"]["steps"],
        guidance_scale=m["sampling"]["guidance_scale"],
    )
    full = m["accuracies"]["adherence"]
    assert ad.object_accuracy >= full["object_accuracy"] - TOLERANCE
    assert ad.style_accuracy >= full["style_accuracy"] - TOLERANCE
