"""The second testbed (profile subword), shipped beside the first: another recipe, for reporting the engine's
defaults on a model they were never tuned on."""

from __future__ import annotations

import json
import subprocess
import sys

from transformers import CLIPTokenizer

from core.testbed.loading import load_manifest
from core.testbed.paths import SHIPPED, named_testbed_dir
from core.testbed.profiles import PROFILES
from core.testbed.saving import file_hashes

SECOND = SHIPPED.parent / "testbed-subword"


def test_second_testbed_is_another_recipe() -> None:
    first, second = load_manifest(SHIPPED), load_manifest(SECOND)
    assert second["profile"] == json.loads(json.dumps(PROFILES["subword"].to_dict()))
    assert second["profile"]["seed"] != first["profile"]["seed"]
    assert second["profile"]["model"]["unet_channels"] != first["profile"]["model"]["unet_channels"]
    assert second["profile"]["unet_steps"] < first["profile"]["unet_steps"]
    assert second["profile"]["model"]["max_tokens"] == 16
    a = CLIPTokenizer.from_pretrained(str(SHIPPED / "pipeline" / "tokenizer"))
    b = CLIPTokenizer.from_pretrained(str(SECOND / "pipeline" / "tokenizer"))
    assert len(b.get_vocab()) < len(a.get_vocab()) and b.model_max_length == 16
    assert len(a.tokenize("square")) == 1 and len(b.tokenize("square")) > 1, "sub-word pieces"
    ad = second["accuracies"]["adherence"]
    # Imperfect on purpose, like a real model (the first testbed: 1.000 / 1.000): objects in the 0.75-0.90 band
    # that real text-to-image models reach, styles close to it.
    assert 0.75 <= ad["object_accuracy"] <= 0.90 and 0.75 <= ad["style_accuracy"] <= 0.95
    assert second["accuracies"]["classifier_heldout"]["object"] >= 0.97


def test_second_testbed_files_are_the_ones_measured() -> None:
    manifest = load_manifest(SECOND)
    assert file_hashes(SECOND) == manifest["files"]
    size = sum(f.stat().st_size for f in SECOND.rglob("*") if f.is_file())
    assert size < 8 * 2**20, f"second testbed is {size / 2**20:.1f} MiB"
    vocab = json.loads((SECOND / "pipeline" / "lethe.json").read_text())
    assert vocab["prompt_templates"] and vocab["surrogate_rule"] == "next-of-kind"


def test_testbed_path_by_name() -> None:
    assert named_testbed_dir("subword") == SECOND, "nothing built under the (private) data dir: the shipped one"
    run = [sys.executable, "-m", "core.cli", "testbed", "path"]
    ok = subprocess.run([*run, "--name", "subword"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("testbed-subword")
    bad = subprocess.run([*run, "--name", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no testbed named 'nope'" in bad.stderr and "Traceback" not in bad.stderr
