"""Retention of a model that lost several concepts: the testbed grid's IRA/CRA over the rest of the grid, and
the lineage added to a request's spec for its verification."""

from __future__ import annotations

import itertools

from core.erasure.lineage import with_lineage
from core.evaluation.metrics import GridResult, target_metrics
from core.testbed.canvas import OBJECTS, STYLES


def _grid(lost_object: str | None, lost_style: str | None) -> GridResult:
    """Every cell drawn right, except that the lost object and the lost style (if any) are never drawn."""
    cells = list(itertools.product(range(len(OBJECTS)), range(len(STYLES))))
    o_lost = OBJECTS.index(lost_object) if lost_object else -1
    s_lost = STYLES.index(lost_style) if lost_style else -1
    return GridResult(
        objs=[o for o, _ in cells], styles=[s for _, s in cells],
        pred_obj=[(o + 1) % len(OBJECTS) if o == o_lost else o for o, _ in cells],
        pred_style=[(s + 1) % len(STYLES) if s == s_lost else s for _, s in cells],
        features_mean=[], seconds=0.0,
    )


def test_rest_of_the_grid_excludes_every_lost_concept() -> None:
    grid = _grid("star", "dotted")
    clean = _grid(None, None)
    t = target_metrics("star", "object", grid, clean)
    assert t.ua == 1.0 and t.ira == 1.0
    assert t.cra < 0.9, "the star's own evaluation counts dotted cells as lost style accuracy"
    forgotten = ([OBJECTS.index("star")], [STYLES.index("dotted")])
    for name, kind in (("star", "object"), ("dotted", "style")):
        t = target_metrics(name, kind, grid, grid, forgotten)  # type: ignore[arg-type]
        assert (t.ua, t.ira, t.cra) == (1.0, 1.0, 1.0)
        assert t.images_rest == (len(OBJECTS) - 1) * (len(STYLES) - 1), "the rest: cells showing neither"


def test_lineage_joins_the_spec_once() -> None:
    from core.spare.specs import ConceptSpec, ErasureSpec

    spec = ErasureSpec(concepts=[ConceptSpec(target="dotted", kind="style", surrogate="solid")])
    lineage = [{"target": "star", "kind": "object", "surrogate": "heart", "version": 2, "erasure_id": "x"},
               {"target": "Dotted", "kind": "style", "surrogate": None, "version": 3, "erasure_id": "y"}]
    judged = with_lineage(spec, lineage)
    assert [(c.target, c.kind, c.surrogate) for c in judged.concepts] == [
        ("dotted", "style", "solid"), ("star", "object", "heart")]
    assert with_lineage(spec, []) is spec
