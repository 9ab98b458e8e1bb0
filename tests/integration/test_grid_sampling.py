"""A testbed's grid is drawn with the sampling its own build measured (its manifest), never with the default
testbed's: the grid checks behind a job's verification must not depend on which other testbed is installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core.evaluation.metrics import sampling_defaults
from core.evaluation.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS
from core.spare.testbed_eval import testbed_evaluator as grid_evaluator
from core.testbed import load_pipeline
from core.testbed.loading import load_manifest
from core.testbed.paths import testbed_dir as default_testbed


def _testbed_with_sampling(root: Path, steps: int, guidance: float) -> Path:
    """The shipped testbed's pipeline and classifier (copied: 9 MB) under a manifest that records other sampling."""
    shipped = default_testbed()
    folder = root / "testbed-other"
    folder.mkdir()
    for part in ("pipeline", "classifier"):
        shutil.copytree(shipped / part, folder / part)
    manifest = load_manifest(shipped)
    manifest["sampling"] = {**manifest.get("sampling", {}), "steps": steps, "guidance_scale": guidance}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_sampling_comes_from_the_testbed_given_or_beside_it(tmp_path: Path) -> None:
    folder = _testbed_with_sampling(tmp_path, 7, 6.5)
    assert sampling_defaults(folder) == (7, 6.5)
    assert sampling_defaults(folder / "classifier") == (7, 6.5)
    assert sampling_defaults(folder / "pipeline" / ".." / "classifier") == (7, 6.5)  # as a lethe.json names it
    shipped = load_manifest(default_testbed())["sampling"]
    assert sampling_defaults() == (shipped["steps"], shipped["guidance_scale"])
    # A model folder that is no testbed gets the library's defaults, not the installed testbed's.
    (tmp_path / "model").mkdir()
    assert sampling_defaults(tmp_path / "model") == (DEFAULT_STEPS, DEFAULT_GUIDANCE)


def test_the_grid_evaluator_draws_at_its_testbeds_guidance(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    shipped_guidance = load_manifest(default_testbed())["sampling"]["guidance_scale"]
    other = 5.0 if shipped_guidance != 5.0 else 3.0
    folder = _testbed_with_sampling(tmp_path, 20, other)
    pipe = load_pipeline(folder / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    metrics = grid_evaluator(["circle"], testbed=folder / "classifier", seeds=[0], steps=2)(pipe, pipe)
    assert metrics["testbed"]["guidance_scale"] == pytest.approx(other)
    assert metrics["testbed"]["steps"] == 2  # steps the caller gives still win
    assert metrics["summary"]["circle"]["ira_rel"] == pytest.approx(1.0)  # the same weights: nothing lost
