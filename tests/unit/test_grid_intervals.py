"""The canvas grid says how many images stand behind each number and how far they pin it down, and the
verification's grid draws further seeds while one of its verdicts could still turn."""

from __future__ import annotations

import itertools

import pytest

from core.config import Settings
from core.erasure.verification import Thresholds, verify
from core.erasure.verified import GRID_SETTLING_SEED0, grid_settling
from core.evaluation.evidence import wilson
from core.evaluation.metrics import GridResult, target_metrics
from core.evaluation.settling import GridSettling
from core.spare.outputs import check_row
from core.spare.report import EngineMetrics
from core.testbed.canvas import OBJECTS, STYLES


def _grid(seeds: int, wrong_objects: int = 0, shown_heart: int = 0) -> GridResult:
    """Every cell drawn right on `seeds` seeds, except the first `wrong_objects` cells outside heart's (object
    misread) and `shown_heart` of heart's own cells, which still show heart (the rest of them show a circle)."""
    cells = [(o, s, seed) for o, s in itertools.product(range(len(OBJECTS)), range(len(STYLES)))
             for seed in range(seeds)]
    heart = OBJECTS.index("heart")
    pred_obj, wrong, shown = [], 0, 0
    for o, _, _ in cells:
        if o == heart:
            pred_obj.append(heart if shown < shown_heart else 0)
            shown += 1
        elif wrong < wrong_objects:
            pred_obj.append((o + 1) % len(OBJECTS) if (o + 1) % len(OBJECTS) != heart else (o + 2) % len(OBJECTS))
            wrong += 1
        else:
            pred_obj.append(o)
    return GridResult(objs=[o for o, _, _ in cells], styles=[s for _, s, _ in cells], pred_obj=pred_obj,
                      pred_style=[s for _, s, _ in cells], features_mean=[1.0, 0.0], seconds=1.0,
                      seeds=[seed for _, _, seed in cells])


def test_a_target_counts_its_cells_and_bounds_each_share() -> None:
    forget, rest = 2 * len(STYLES), 2 * len(OBJECTS) * len(STYLES) - 2 * len(STYLES)
    t = target_metrics("heart", "object", _grid(2, wrong_objects=5, shown_heart=1), _grid(2))
    assert (t.images_forget, t.images_rest) == (forget, rest)
    assert t.ua == pytest.approx((forget - 1) / forget) and t.ua_interval == wilson(forget - 1, forget)
    assert t.ira_rel == pytest.approx((rest - 5) / rest)
    assert t.ira_rel_interval is not None and t.ira_rel_interval == wilson(rest - 5, rest)
    assert t.cra_rel == 1.0 and t.cra_rel_interval is not None and t.cra_rel_interval[1] == 1.0
    # Relative to a base that misreads some cells itself: the interval is over the base's accuracy.
    t = target_metrics("heart", "object", _grid(2, wrong_objects=5), _grid(2, wrong_objects=10))
    base = (rest - 10) / rest
    assert t.ira_rel_interval is not None
    assert t.ira_rel_interval[0] == pytest.approx(wilson(rest - 5, rest)[0] / base, abs=1e-3)


def test_a_style_is_counted_over_the_objects() -> None:
    t = target_metrics("dotted", "style", _grid(2), _grid(2))
    assert t.images_forget == 2 * len(OBJECTS) and t.ua == 0.0
    assert t.ua_interval is not None and t.ua_interval[0] == 0.0


def test_pooled_draws_count_every_image_and_narrow_the_interval() -> None:
    first, more = _grid(2, wrong_objects=5), _grid(6, wrong_objects=15)
    pooled = first.pooled(more)
    assert len(pooled.objs) == len(first.objs) + len(more.objs) and pooled.seconds == 2.0
    assert pooled.seeds == first.seeds + more.seeds and pooled.features_mean == [1.0, 0.0]
    one = target_metrics("heart", "object", first, _grid(2))
    both = target_metrics("heart", "object", pooled, _grid(2).pooled(_grid(6)))
    assert both.images_rest == 4 * one.images_rest  # type: ignore[operator]
    assert both.ira_rel == pytest.approx(one.ira_rel)
    assert one.ira_rel_interval and both.ira_rel_interval
    assert both.ira_rel_interval[1] - both.ira_rel_interval[0] < one.ira_rel_interval[1] - one.ira_rel_interval[0]


def test_settling_opens_the_verdicts_a_larger_sample_could_turn() -> None:
    settle = GridSettling(min_ua=0.9, min_retention=0.9, seeds=(100, 101))
    clean = target_metrics("heart", "object", _grid(2), _grid(2))
    # All of heart's cells erased, nothing else lost: ten images cannot pin UA above 0.9, fifty can IRA.
    assert settle.open_verdicts([clean]) == ["ua:heart"]
    assert GridSettling(min_ua=0.5, min_retention=0.9, seeds=()).open_verdicts([clean]) == []
    # A retention just above the threshold is open; one clearly below settles the retention decision.
    near = target_metrics("heart", "object", _grid(2, wrong_objects=4), _grid(2))
    assert "ira_rel:heart" in settle.open_verdicts([near])
    broken = target_metrics("heart", "object", _grid(2, wrong_objects=20), _grid(2))
    assert not [v for v in settle.open_verdicts([broken]) if v.startswith(("ira", "cra"))]


def test_the_verification_settles_on_seeds_of_its_own() -> None:
    settings = Settings(verify_grid_seeds=2, verify_grid_max_seeds=8)
    thresholds = Thresholds(min_unlearning_accuracy=0.95, min_retention=0.9, min_gap_closure=None,
                            max_retain_drift=1.0)
    settle = grid_settling(settings, thresholds, [0, 1])
    assert settle.seeds == tuple(range(GRID_SETTLING_SEED0, GRID_SETTLING_SEED0 + 6))
    assert (settle.min_ua, settle.min_retention) == (0.95, 0.9)
    assert grid_settling(Settings(verify_grid_seeds=2, verify_grid_max_seeds=2), thresholds, [0, 1]).seeds == ()


def test_a_certificates_grid_checks_say_how_many_images_stand_behind_them() -> None:
    t = target_metrics("heart", "object", _grid(2, wrong_objects=3), _grid(2))
    metrics = EngineMetrics.model_validate({"summary": {"heart": t.model_dump(mode="json")}})
    thresholds = Thresholds(min_unlearning_accuracy=0.95, min_retention=0.9, min_gap_closure=None,
                            max_retain_drift=1.0)
    checks = verify(metrics, thresholds, ["heart"]).checks
    ira = checks["grid_ira_rel[heart]"]
    assert ira["images"] == t.images_rest and ira["interval"] == list(t.ira_rel_interval or ())
    assert ira["interval"][0] < ira["value"] <= ira["interval"][1]
    assert checks["grid_ua[heart]"]["images"] == 2 * len(STYLES)
    # The model card's table says it too; a check that counts no images shows none.
    low, high = ira["interval"]
    assert check_row("grid_ira_rel[heart]", ira) == (
        f"| grid_ira_rel[heart] | {ira['value']:.3f} | {low:.3f}-{high:.3f} ({t.images_rest}) | >= 0.900 | yes |")
    assert check_row("retain_drift_relative", {"value": 0.1, "max": 0.5, "passed": True}) == (
        "| retain_drift_relative | 0.100 | - | <= 0.500 | yes |")
