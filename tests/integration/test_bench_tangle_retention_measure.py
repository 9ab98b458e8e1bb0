"""bench/tangle_retention.py --measure: each candidate's tangle measured on a testbed's base model as a job's
screen measures it, joined with the rounds an --against file holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import tangle_retention
from core.config import get_settings
from core.erasure.judging import screenings, shared_judge
from core.spare.loading import pipeline_dir
from core.spare.specs import ConceptSpec, ErasureSpec
from core.testbed.loading import load_pipeline
from core.testbed.paths import named_testbed_dir

torch.set_num_threads(1)


@pytest.mark.usefixtures("real_verification")  # the service's allowances and screen size
def test_measured_tangles_are_the_screens_and_are_banded(tmp_path: Path) -> None:
    against = tmp_path / "rounds.json"
    rounds = {"circle": (0.80, 0.98), "triangle": (0.97, 1.0)}  # IRA / CRA % of base of a round (made up)
    against.write_text(json.dumps({"rows": [
        {"testbed": "testbed-dev", "target": "heart", "surrogate": s, "ua": 1.0, "ira_rel": i, "cra_rel": c}
        for s, (i, c) in rounds.items()]}))
    out = tmp_path / "tangle.json"
    assert tangle_retention.main(["--testbed", "testbed-dev", "--measure", "dev", "--against", str(against),
                                  "--out", str(out)]) == 0
    rows = {r["surrogate"]: r for r in json.loads(out.read_text())["rows"]}

    # The same measure a job's screen takes on that model (its classifier, the service's allowances).
    model_dir = pipeline_dir(named_testbed_dir("dev"))
    settings = get_settings()
    judge = shared_judge(model_dir, settings, judge_name="model-classifier", fingerprint=None)
    screening = screenings(model_dir, settings, judge=judge, min_unlearning_accuracy=0.9, min_retention=0.9,
                           guidance_scale=5.0)(load_pipeline(model_dir), ())
    measure = screening.measurer(ErasureSpec(concepts=[ConceptSpec(target="heart")]), "object", "heart")
    for candidate in rounds:
        tried = measure(candidate)[0]
        assert (rows[candidate]["tangled"], rows[candidate]["tangled_with"]) == (tried.tangled, tried.tangled_with)
        assert rows[candidate]["band"] == tangle_retention.band(tried.model_dump(), 0.10)
    # That model draws circles as squares: circle sits on a boundary it barely holds, beyond sampling noise.
    assert rows["circle"]["tangled_with"] == "square" and rows["circle"]["band"] == "beyond noise"
    assert rows["circle"]["retention"] == 0.80
