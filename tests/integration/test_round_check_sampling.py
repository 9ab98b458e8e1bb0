"""The round check's sequential sample on the shipped testbed: an uncertain failure (and, when the setting asks,
an uncertain pass) draws more held-out images on new seeds and pools them; a settled verdict does not, and gets
no images in the extensions."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch

from core.config import get_settings
from core.erasure.judging import job_evaluator, round_check, shared_judge
from core.erasure.verification import Thresholds
from core.spare.specs import ConceptSpec, ErasureSpec, SpareConfig
from core.testbed import paths
from core.testbed.loading import load_pipeline

pytestmark = pytest.mark.slow(minutes=0.1)


@pytest.fixture(scope="module")
def testbed() -> object:
    torch.set_num_threads(1)
    return load_pipeline(paths.testbed_dir() / "pipeline")


def _check(min_ua: float, monkeypatch: pytest.MonkeyPatch, min_retention: float = 0.1,
           settle_passes: bool = False) -> object:
    monkeypatch.setenv("LETHE_ROUND_CHECK_SETTLE_PASSES", str(settle_passes).lower())
    monkeypatch.setenv("LETHE_ROUND_CHECK_FORGET_IMAGES", "6")
    monkeypatch.setenv("LETHE_ROUND_CHECK_RETAIN_IMAGES", "2")
    monkeypatch.setenv("LETHE_ROUND_CHECK_MAX_IMAGES", "40")
    monkeypatch.setenv("LETHE_JUDGE_STEPS", "6")
    get_settings.cache_clear()
    spec = ErasureSpec(concepts=[ConceptSpec(target="triangle", kind="object", surrogate="square")])
    model_dir = paths.testbed_dir() / "pipeline"
    judge = shared_judge(model_dir, get_settings(), judge_name="model-classifier", fingerprint=None)
    return round_check(model_dir, spec, SpareConfig(), get_settings(), judge=judge, min_unlearning_accuracy=min_ua,
                       min_retention=min_retention)


def test_an_uncertain_failure_doubles_the_sample(testbed: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # The base model is its own "erased" model: it still draws triangles (UA near 0). Against a threshold of
    # 0.3, 0 of 6 cannot rule 0.3 out (Wilson upper bound 0.39); 0 of 12 can (0.24).
    verdict = _check(0.3, monkeypatch)(testbed, testbed)
    evidence = verdict.metrics["judge"]
    triangle = evidence["concepts"][0]
    assert not verdict.passed and verdict.metrics["extensions"] >= 1
    assert triangle["images"] == 6 * 2 ** verdict.metrics["extensions"]
    assert len(set(triangle["seeds"])) == triangle["images"], "every extension draws on new seeds"
    assert min(triangle["seeds"]) >= 700_000 and not set(triangle["seeds"]) & set(range(900_000, 910_000))


def test_a_clear_failure_is_not_resampled(testbed: object, monkeypatch: pytest.MonkeyPatch) -> None:
    verdict = _check(0.99, monkeypatch)(testbed, testbed)
    assert not verdict.passed and verdict.metrics["extensions"] == 0
    assert verdict.metrics["judge"]["concepts"][0]["images"] == 6


def test_an_uncertain_pass_goes_on_as_it_is(testbed: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # As below: retention passes on one image per group, with an interval reaching below 0.5. By default the
    # check leaves that pass to the verification's own larger sample.
    verdict = _check(0.99, monkeypatch, min_retention=0.5)(testbed, testbed)
    assert verdict.retention_ok and verdict.metrics["extensions"] == 0
    assert all(r["images"] == 1 for r in verdict.metrics["judge"]["retention"])


def test_an_uncertain_pass_doubles_the_sample_when_passes_are_settled(testbed: object,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # UA fails clearly (the base still draws triangles), but retention passes on one image per group: the base
    # against itself keeps 1 of 1, whose interval (from 0.21) reaches below 0.5 — the rollback decision is open.
    verdict = _check(0.99, monkeypatch, min_retention=0.5, settle_passes=True)(testbed, testbed)
    evidence = verdict.metrics["judge"]
    assert not verdict.passed and verdict.retention_ok and verdict.metrics["extensions"] >= 1
    kept = [r for r in evidence["retention"] if r["retention"] is not None]
    assert kept and all(r["images"] == 2 ** verdict.metrics["extensions"] for r in evidence["retention"])
    # The settled UA verdict gets no more images: the extensions draw for the open verdicts only.
    assert evidence["concepts"][0]["images"] == 6
    assert evidence["images"] == 2 * (6 + sum(r["images"] for r in evidence["retention"]))


def _check_evidence(monkeypatch: pytest.MonkeyPatch) -> Callable[[object, object], dict]:
    """The round check -> its judge evidence."""
    check = _check(0.99, monkeypatch)
    return lambda erased, base: check(erased, base).metrics["judge"]  # type: ignore[attr-defined]


def _verification(monkeypatch: pytest.MonkeyPatch) -> Callable[[object, object], dict]:
    """The job's final evaluator (one draw, no thresholds) -> its judge evidence."""
    monkeypatch.setenv("LETHE_JUDGE_FORGET_IMAGES", "4")
    monkeypatch.setenv("LETHE_JUDGE_RETAIN_IMAGES", "4")
    monkeypatch.setenv("LETHE_JUDGE_STEPS", "6")
    get_settings.cache_clear()
    spec = ErasureSpec(concepts=[ConceptSpec(target="triangle", kind="object", surrogate="square")])
    evaluate = job_evaluator(paths.testbed_dir() / "pipeline", spec, SpareConfig(), get_settings(),
                             judge_name="model-classifier", fingerprint=None)
    return lambda erased, base: evaluate(erased, base)["judge"]


@pytest.mark.parametrize("judging", ["round check", "verification"])
def test_rounds_draw_the_base_images_once(judging: str, testbed: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.evaluation import evidence

    drawn: list[tuple[object, int]] = []
    real = evidence.generate

    def spy(pipeline: object, prompts: list[str], seeds: list[int], **kw: object) -> object:
        drawn.append((pipeline, len(prompts)))
        return real(pipeline, prompts, seeds, **kw)

    monkeypatch.setattr(evidence, "generate", spy)
    judge = {"round check": _check_evidence, "verification": _verification}[judging](monkeypatch)
    erased = type(testbed)(**testbed.components)  # another pipeline object, as each round hands it
    erased.set_progress_bar_config(disable=True)
    first, second = judge(erased, testbed), judge(erased, testbed)
    assert [n for p, n in drawn if p is testbed] == [first["images"] // 2], "a later round reuses the base's images"
    assert sum(n for p, n in drawn if p is erased) == first["images"]  # the erased model draws every round
    assert first["concepts"] == second["concepts"] and first["retention"] == second["retention"]


def test_lost_images_name_what_the_erasure_broke(testbed: object, monkeypatch: pytest.MonkeyPatch) -> None:
    check = _check(0.99, monkeypatch, min_retention=0.99)
    # The base against itself loses nothing.
    assert all(r["lost"] == [] for r in check(testbed, testbed).metrics["judge"]["retention"])
    # A model whose decoder half is gone draws none of the concepts it used to.
    unet = copy.deepcopy(testbed.unet)
    with torch.no_grad():
        for p in unet.up_blocks.parameters():
            p.mul_(0.0)
    broken = type(testbed)(**{**testbed.components, "unet": unet})
    broken.set_progress_bar_config(disable=True)
    verdict = check(broken, testbed)
    kept = [r for r in verdict.metrics["judge"]["retention"] if r["correct_base"]]
    assert kept and not verdict.retention_ok
    for r in kept:
        assert len(r["lost"]) >= r["correct_base"] - r["correct_erased"] > 0
        drawn = set(zip(r["prompts"], r["seeds"], strict=True))
        for image in r["lost"]:
            assert image["concept"] in r["concepts"] and image["erased_label"] != image["concept"]
            assert (image["prompt"], image["seed"]) in drawn


def _diagnosed_verification(monkeypatch: pytest.MonkeyPatch, min_ua: float) -> tuple[Callable[..., dict], list]:
    """The job's final evaluator with the verification's thresholds and a diagnostics evaluator that records its
    calls."""
    monkeypatch.setenv("LETHE_JUDGE_FORGET_IMAGES", "4")
    monkeypatch.setenv("LETHE_JUDGE_RETAIN_IMAGES", "2")
    monkeypatch.setenv("LETHE_JUDGE_MAX_IMAGES", "8")
    monkeypatch.setenv("LETHE_JUDGE_STEPS", "6")
    get_settings.cache_clear()
    diagnosed: list[object] = []

    def diagnostics(erased: object, base: object) -> dict:
        diagnosed.append(erased)
        return {"summary": {"triangle": {"ua": 0.5, "ira": 1.0, "cra": 1.0, "ira_rel": 1.0, "cra_rel": 1.0}}}

    spec = ErasureSpec(concepts=[ConceptSpec(target="triangle", kind="object", surrogate="square")])
    evaluate = job_evaluator(paths.testbed_dir() / "pipeline", spec, SpareConfig(), get_settings(),
                             judge_name="model-classifier", fingerprint=None, thresholds=_ua_at_least(min_ua),
                             diagnostics=diagnostics)
    return evaluate, diagnosed


def test_the_diagnostics_wait_for_the_judges_pass(testbed: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The base judged as its own erasure still draws triangles: against a UA threshold of 0.99 the judge
    refuses it, and the diagnostics (which can only fail it further) are not drawn unless asked for; against
    a threshold of 0 the judge passes it and they run."""
    from core.erasure.verification import verify
    from core.spare.report import EngineMetrics

    refusing, diagnosed = _diagnosed_verification(monkeypatch, min_ua=0.99)
    metrics = refusing(testbed, testbed)
    assert diagnosed == [] and "summary" not in metrics and metrics["diagnostics_skipped"]
    verdict = verify(EngineMetrics.model_validate(metrics), _ua_at_least(0.99))
    assert not verdict.ok and "ua[triangle]" in verdict.reason
    complete = refusing(testbed, testbed, complete=True)
    assert diagnosed == [testbed] and "summary" in complete and "diagnostics_skipped" not in complete
    assert complete["judge"]["concepts"] == metrics["judge"]["concepts"], "the same held-out evidence"
    # Evidence drawn before for the same weights is handed back and reused, not drawn again (a new draw would
    # have its own seconds); the diagnostics run on top of it.
    reused = refusing(testbed, testbed, complete=True, judged=metrics["judge"])
    assert reused["judge"] == metrics["judge"] and diagnosed == [testbed, testbed] and "summary" in reused

    passing, diagnosed = _diagnosed_verification(monkeypatch, min_ua=0.0)
    metrics = passing(testbed, testbed)
    assert diagnosed == [testbed] and "summary" in metrics and "diagnostics_skipped" not in metrics


def _ua_at_least(min_ua: float) -> Thresholds:
    return Thresholds(min_unlearning_accuracy=min_ua, min_retention=0.0, min_gap_closure=None, max_retain_drift=1.0)
