"""The surrogate screen on the shipped testbeds, with each testbed's own classifier as the judge.

On the second testbed the base model's stars are often labelled triangles in held-out phrasings: distilled
towards "star" (its vocabulary's next-of-kind pick), an erased triangle would still be judged a triangle in
those images, so the screen must pick another surrogate before any round runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from core.config import get_settings
from core.erasure.judging import screenings, shared_judge, surrogate_screen
from core.evaluation.vocabulary import load_vocabulary
from core.spare import ErasureSpec
from core.spare.loading import load_pipeline
from core.spare.prompting import fit_request, named_surrogates
from core.spare.specs import ConceptSpec, SpareConfig
from core.testbed.paths import named_testbed_dir


@pytest.fixture(scope="module")
def second() -> tuple[Any, Any]:
    torch.set_num_threads(1)
    model_dir = named_testbed_dir("subword") / "pipeline"
    return model_dir, load_pipeline(model_dir)


def _screen(model_dir: Any, pipe: Any, concept: ConceptSpec, **settings: Any) -> tuple[ErasureSpec, list[Any]]:
    # The service's judge sizes (the suite's defaults draw 2-step images that no judge can read).
    base = get_settings().model_copy(update={"judge_steps": 10, "surrogate_screen_images": 8, **settings})
    requested = ErasureSpec(concepts=[concept])
    spec, _ = fit_request(requested, SpareConfig(), load_vocabulary(model_dir))
    judge = shared_judge(model_dir, base, judge_name="model-classifier", fingerprint=None)
    screening = screenings(model_dir, base, judge=judge, min_unlearning_accuracy=0.95, min_retention=None,
                           guidance_scale=5.0)
    screen = surrogate_screen(base, screening=screening)
    return screen(pipe, spec, named_surrogates(requested))


def test_a_picked_surrogate_the_judge_confuses_is_replaced(second: tuple[Any, Any]) -> None:
    model_dir, pipe = second
    spec, records = _screen(model_dir, pipe, ConceptSpec(target="triangle"))
    (record,) = records
    assert record.tried[0].surrogate == "star" and record.tried[0].confused >= 0.5, record
    assert record.switched and record.chosen not in ("star", "triangle")
    chosen = next(t for t in record.tried if t.surrogate == record.chosen)
    assert chosen.confused <= 0.05 and record.seconds > 0
    assert spec.concepts[0].surrogate == record.chosen
    assert spec.concepts[0].prompts, "the forget prompts stay"


def test_a_clean_surrogate_is_kept_after_one_measurement(second: tuple[Any, Any]) -> None:
    model_dir, pipe = second
    spec, (record,) = _screen(model_dir, pipe, ConceptSpec(target="checkered"))
    assert not record.switched and len(record.tried) == 1 and record.chosen == "solid"
    assert spec.concepts[0].surrogate == "solid"


def test_a_named_surrogate_is_measured_but_kept(second: tuple[Any, Any]) -> None:
    model_dir, pipe = second
    spec, (record,) = _screen(model_dir, pipe, ConceptSpec(target="triangle", surrogate="star"))
    assert record.named and not record.switched and len(record.tried) == 1
    assert record.tried[0].confused >= 0.5, "reported, so the requester can see why UA stays low"
    assert spec.concepts[0].surrogate == "star"


def test_the_screen_can_be_turned_off(second: tuple[Any, Any]) -> None:
    model_dir, pipe = second
    spec, records = _screen(model_dir, pipe, ConceptSpec(target="triangle"), surrogate_screen_images=0)
    assert records == [] and spec.concepts[0].surrogate == "star"


def _verified_rounds(model_dir: Any, pipe: Any, target: str, **settings: Any) -> tuple[Any, Any, Any, Any]:
    """verified_rounds as workers call it for one target, with the service's judge steps and a tiny check."""
    from core.erasure import judging
    from core.erasure.verification import Thresholds

    chosen = get_settings().model_copy(update={"judge_steps": 10, "surrogate_screen_images": 8,
                                               "round_check_forget_images": 2, "round_check_retain_images": 2,
                                               "round_check_max_images": 1, **settings})
    requested = ErasureSpec(concepts=[ConceptSpec(target=target)])
    spec, config = fit_request(requested, SpareConfig(), load_vocabulary(model_dir))
    return judging.verified_rounds(pipe, model_dir, requested, spec, config, chosen, judge_name="model-classifier",
                                   fingerprint=None, thresholds=Thresholds.for_request(chosen))


def test_the_screen_and_the_round_check_share_one_judge(second: tuple[Any, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from core.erasure import judging

    model_dir, pipe = second
    chosen: list[Any] = []
    real = judging.select_judge

    def counted(*args: Any, **kwargs: Any) -> Any:
        chosen.append(real(*args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr(judging, "select_judge", counted)
    spec, screened, check, _ = _verified_rounds(model_dir, pipe, "triangle", verify_min_unlearning_accuracy=0.95)
    (record,) = screened
    assert record.switched and spec.concepts[0].surrogate == record.chosen, "the check gets the screened spec"
    verdict = check(pipe, pipe)  # the base as its own erased model: triangles still drawn
    assert verdict.ua and not verdict.ua_ok
    assert verdict.metrics["judge"]["concepts"][0]["surrogate"] == record.chosen
    assert len(chosen) == 1, "one judge for the screen and every round's check"


def _switch(model_dir: Any, pipe: Any, concept: ConceptSpec, named: frozenset[str] = frozenset()) -> Any:
    from core.erasure.judging import surrogate_switch

    settings = get_settings().model_copy(update={"judge_steps": 10, "surrogate_screen_images": 8})
    spec, _ = fit_request(ErasureSpec(concepts=[concept]), SpareConfig(), load_vocabulary(model_dir))
    judge = shared_judge(model_dir, settings, judge_name="model-classifier", fingerprint=None)
    screening = screenings(model_dir, settings, judge=judge, min_unlearning_accuracy=0.95, min_retention=None,
                           guidance_scale=5.0)
    switch = surrogate_switch(pipe, settings, screening=screening, named=set(named))
    return spec, switch


def test_a_switch_takes_the_next_candidate_the_judge_tells_from_the_concept(second: tuple[Any, Any]) -> None:
    # dotted's surrogate outline spread over other styles in a round: the next declared style is measured.
    model_dir, pipe = second
    spec, switch = _switch(model_dir, pipe, ConceptSpec(target="dotted", surrogate="outline"))
    switched, record = switch(spec, "dotted")
    assert record.switched and record.chosen == "checkered" and record.tried[0].confused <= 0.05
    assert switched.concepts[0].surrogate == "checkered" and switched.concepts[0].target == "dotted"
    assert spec.concepts[0].surrogate == "outline", "the spec the job started from is left as it was"


def test_a_switch_with_every_candidate_confused_keeps_the_surrogate(second: tuple[Any, Any]) -> None:
    # triangle (surrogate heart): star, cross, circle and square are each drawn as a triangle at times.
    model_dir, pipe = second
    spec, switch = _switch(model_dir, pipe, ConceptSpec(target="triangle", surrogate="heart"))
    switched, record = switch(spec, "triangle")
    assert switched is None and not record.switched
    assert [t.surrogate for t in record.tried] == ["star", "cross", "circle", "square"]
    assert all(t.confused > 0.05 for t in record.tried)


def test_a_named_surrogate_is_never_switched(second: tuple[Any, Any]) -> None:
    model_dir, pipe = second
    spec, switch = _switch(model_dir, pipe, ConceptSpec(target="dotted", surrogate="outline"),
                           named=frozenset({"dotted"}))
    switched, record = switch(spec, "dotted")
    assert switched is None and record.named and record.tried == []


def test_the_round_check_judges_the_surrogate_the_round_trained_toward(second: tuple[Any, Any]) -> None:
    from core.spare.round_spec import training_toward

    model_dir, pipe = second
    _, _, check, _ = _verified_rounds(model_dir, pipe, "dotted")
    assert check(pipe, pipe).metrics["judge"]["concepts"][0]["surrogate"] == "outline"
    with training_toward({"dotted": "checkered"}):
        assert check(pipe, pipe).metrics["judge"]["concepts"][0]["surrogate"] == "checkered"
