"""The noise-space gap between a target and its candidate surrogates (core.evaluation.surrogate_gap) on the
development testbed's pipeline: zero for the target itself, positive for every other concept, the same however
the candidates are listed."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from core.evaluation.surrogate_gap import noise_gaps
from core.evaluation.vocabulary import load_vocabulary
from core.spare.loading import load_pipeline
from core.testbed.paths import named_testbed_dir


@pytest.fixture(scope="module")
def dev() -> tuple[Any, Any]:
    torch.set_num_threads(1)
    model_dir = named_testbed_dir("dev") / "pipeline"
    return load_vocabulary(model_dir), load_pipeline(model_dir)


def test_the_gap_is_zero_for_the_target_and_positive_for_every_other_concept(dev: tuple[Any, Any]) -> None:
    vocabulary, pipe = dev
    others = [c for c in vocabulary.concepts["object"] if c != "heart"]
    gaps = noise_gaps(pipe, vocabulary, kind="object", target="heart", candidates=["heart", *others], prompts=2,
                      steps=4)
    assert gaps["heart"] == 0.0
    assert all(gaps[c] > 0 for c in others)
    again = noise_gaps(pipe, vocabulary, kind="object", target="heart", candidates=list(reversed(others)),
                       prompts=2, steps=4)
    assert again == {c: gaps[c] for c in others}, "each candidate is measured on the same latents and noise"
    assert len(set(gaps.values())) == len(gaps), "the candidates' predictions differ"


def test_a_target_the_vocabulary_cannot_phrase_is_refused(dev: tuple[Any, Any]) -> None:
    vocabulary, pipe = dev
    with pytest.raises(ValueError, match="no held-out phrasing"):
        noise_gaps(pipe, vocabulary.with_concepts("object", []), kind="object", target="", candidates=["square"])
