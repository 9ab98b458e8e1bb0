"""The surrogate screen's neighbourhood measure on the development testbed, with its own classifier as the judge.

That model draws a circle as a square about one time in three (circle adherence 0.60): circle and square sit on a
boundary it barely holds. Its vocabulary picks "circle" for a heart (next of kind, wrapping), and a heart
distilled toward a circle lost the model's circles to "square"; the screen must see the tangle and pick a
surrogate whose neighbours the base model keeps apart."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from core.config import get_settings
from core.erasure.judging import screenings, shared_judge, surrogate_screen, surrogate_switch
from core.evaluation.evidence import wilson
from core.evaluation.vocabulary import load_vocabulary
from core.spare import ErasureSpec
from core.spare.loading import load_pipeline
from core.spare.prompting import fit_request, named_surrogates
from core.spare.specs import ConceptSpec, SpareConfig
from core.testbed.paths import named_testbed_dir

MIN_RETENTION = 0.90  # the verification's default: a neighbourhood allowance of 0.10


@pytest.fixture(scope="module")
def dev() -> tuple[Any, Any]:
    torch.set_num_threads(1)
    model_dir = named_testbed_dir("dev") / "pipeline"
    return model_dir, load_pipeline(model_dir)


def _tools(model_dir: Any, min_retention: float = MIN_RETENTION, **settings: Any) -> tuple[Any, Any]:
    chosen = get_settings().model_copy(update={"judge_steps": 10, "surrogate_screen_images": 8, **settings})
    judge = shared_judge(model_dir, chosen, judge_name="model-classifier", fingerprint=None)
    screening = screenings(model_dir, chosen, judge=judge, min_unlearning_accuracy=0.95,
                           min_retention=min_retention, guidance_scale=5.0)
    return chosen, screening


def _screen(model_dir: Any, pipe: Any, concept: ConceptSpec, min_retention: float = MIN_RETENTION,
            **settings: Any) -> tuple[ErasureSpec, Any]:
    chosen, screening = _tools(model_dir, min_retention, **settings)
    requested = ErasureSpec(concepts=[concept])
    spec, _ = fit_request(requested, SpareConfig(), load_vocabulary(model_dir))
    screened, (record,) = surrogate_screen(chosen, screening=screening)(pipe, spec, named_surrogates(requested))
    return screened, record


def test_a_surrogate_the_base_model_mixes_up_with_a_kept_concept_is_replaced(dev: tuple[Any, Any]) -> None:
    model_dir, pipe = dev
    spec, record = _screen(model_dir, pipe, ConceptSpec(target="heart"))
    first = record.tried[0]
    assert first.surrogate == "circle" and first.confused <= 0.05, "told from a heart: confusion alone keeps it"
    assert first.tangled_with == "square" and first.tangled > 1 - MIN_RETENTION, first
    assert record.switched and record.chosen not in ("circle", "heart")
    chosen = next(t for t in record.tried if t.surrogate == record.chosen)
    assert chosen.tangled <= 1 - MIN_RETENTION and chosen.confused <= 0.05
    # Square is circle's other side of the same boundary: measured tangled too, never chosen.
    square = [t for t in record.tried if t.surrogate == "square"]
    assert not square or square[0].tangled > 1 - MIN_RETENTION
    assert spec.concepts[0].surrogate == record.chosen


def test_a_tangle_within_sampling_noise_of_the_allowance_keeps_the_folders_pick(dev: tuple[Any, Any]) -> None:
    # Heart's pick circle crosses with square in a share of its 16 base images above 0.15 (the allowance at a
    # retention threshold of 0.85) whose 95 % interval still reaches below it: too few images to drop the pick.
    model_dir, pipe = dev
    spec, record = _screen(model_dir, pipe, ConceptSpec(target="heart"), min_retention=0.85)
    (first,) = record.tried
    assert first.surrogate == "circle" and first.tangled_with == "square" and first.tangle_images == 16
    assert first.tangled > 0.15 and wilson(round(first.tangled * 16), 16)[0] <= 0.15, first
    assert not record.switched and spec.concepts[0].surrogate == "circle"


def test_the_neighbourhood_can_be_turned_off(dev: tuple[Any, Any]) -> None:
    model_dir, pipe = dev
    spec, record = _screen(model_dir, pipe, ConceptSpec(target="heart"), surrogate_screen_neighbours=False)
    assert not record.switched and record.chosen == "circle" and record.tried[0].tangled is None
    assert spec.concepts[0].surrogate == "circle"


def test_a_named_surrogate_is_measured_for_its_neighbourhood_but_kept(dev: tuple[Any, Any]) -> None:
    model_dir, pipe = dev
    spec, record = _screen(model_dir, pipe, ConceptSpec(target="heart", surrogate="circle"))
    assert record.named and not record.switched and len(record.tried) == 1
    assert record.tried[0].tangled_with == "square", "reported, so the requester can see why retention suffers"
    assert spec.concepts[0].surrogate == "circle"


def test_a_switch_passes_over_a_tangled_candidate(dev: tuple[Any, Any]) -> None:
    # After a round: heart's surrogate triangle spread; the next declared objects after heart wrap to circle,
    # square (both tangled), then triangle (in use) and star.
    model_dir, pipe = dev
    chosen, screening = _tools(model_dir)
    spec, _ = fit_request(ErasureSpec(concepts=[ConceptSpec(target="heart", surrogate="triangle")]), SpareConfig(),
                          load_vocabulary(model_dir))
    switched, record = surrogate_switch(pipe, chosen, screening=screening, named=set())(spec, "heart")
    names = [t.surrogate for t in record.tried]
    assert names[:2] == ["circle", "square"] and all(t.tangled > 1 - MIN_RETENTION for t in record.tried[:2])
    assert "triangle" not in names, "the surrogate in use is not a candidate"
    fit = [t for t in record.tried if t.confused <= 0.05]
    if switched is None:
        assert fit == [], "only candidates all confused with heart leave the surrogate in place"
        return
    taken = next(t for t in record.tried if t.surrogate == record.chosen)
    assert switched.concepts[0].surrogate == record.chosen
    within = [t for t in fit if t.tangled <= 1 - MIN_RETENTION]
    if within:
        assert taken == within[0] and record.chosen not in ("circle", "square")
    else:  # every candidate tangled: the least tangled one, as the screen would take
        assert taken.tangled == min(t.tangled for t in fit)


def test_the_base_images_are_labelled_once_per_screening(dev: tuple[Any, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from core.evaluation import surrogates

    model_dir, pipe = dev
    drawn: list[str] = []
    real = surrogates.labelled

    def counted(*args: Any, **kwargs: Any) -> Any:
        drawn.append(kwargs["concept"])
        return real(*args, **kwargs)

    monkeypatch.setattr(surrogates, "labelled", counted)
    chosen, screening = _tools(model_dir)
    spec, _ = fit_request(ErasureSpec(concepts=[ConceptSpec(target="heart")]), SpareConfig(),
                          load_vocabulary(model_dir))
    screened, (record,) = surrogate_screen(chosen, screening=screening)(pipe, spec, set())
    assert record.switched, "the switch below measures what the screen did not"
    surrogate_switch(pipe, chosen, screening=screening, named=set())(screened, "heart")
    assert len(drawn) == len(set(drawn)), "the switch reuses the screen's labelled images"
    assert "heart" not in drawn, "the target's own images are not needed"


@pytest.mark.parametrize("target", ["heart", "striped"])
def test_nearest_order_takes_the_nearest_candidate_within_both_allowances(dev: tuple[Any, Any], target: str) -> None:
    # LETHE_SURROGATE_SCREEN_ORDER=nearest: every declared concept of the kind, nearest first by the base model's
    # noise-space gap, the folder's pick one candidate among them; the first within both allowances is taken.
    model_dir, pipe = dev
    chosen, screening = _tools(model_dir, surrogate_screen_order="nearest")
    spec, _ = fit_request(ErasureSpec(concepts=[ConceptSpec(target=target)]), SpareConfig(),
                          load_vocabulary(model_dir))
    kind = spec.concepts[0].kind
    screened, (record,) = surrogate_screen(chosen, screening=screening)(pipe, spec, set())
    measured = screening(pipe, ())  # the Screening the screen used (one per base model)
    gaps = measured.gaps(kind, target)
    others = [c for c in load_vocabulary(model_dir).concepts[kind] if c != target]
    assert sorted(gaps) == sorted(others) and all(g > 0 for g in gaps.values())
    names = [t.surrogate for t in record.tried]
    assert names == sorted(names, key=gaps.__getitem__), "measured nearest first"
    assert names[0] == min(others, key=gaps.__getitem__), "the folder's pick has no precedence"
    within = [t for t in record.tried if measured.within(t)]
    if within:
        assert record.chosen == within[0].surrogate and within[0] == record.tried[-1], "stops at the first within"
    else:
        assert record.chosen == min(record.tried, key=measured.rank).surrogate
    assert screened.concepts[0].surrogate == record.chosen


def test_nearest_order_also_orders_a_switch(dev: tuple[Any, Any]) -> None:
    model_dir, pipe = dev
    chosen, screening = _tools(model_dir, surrogate_screen_order="nearest")
    spec, _ = fit_request(ErasureSpec(concepts=[ConceptSpec(target="heart", surrogate="triangle")]), SpareConfig(),
                          load_vocabulary(model_dir))
    _, record = surrogate_switch(pipe, chosen, screening=screening, named=set())(spec, "heart")
    gaps = screening(pipe, ()).gaps("object", "heart")
    names = [t.surrogate for t in record.tried]
    assert "triangle" not in names and names == sorted(names, key=gaps.__getitem__)
    _, vocabulary_order = _tools(model_dir)
    assert vocabulary_order(pipe, ()).alternatives(spec, "object", "heart", {"triangle"})[:2] == ["circle", "square"]
